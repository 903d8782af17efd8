/* The Linux guest's side of the `calls` benchmark, measured the way libos's call-bench measures
 * its calls (7 runs x 20000 iterations, TSC ticks per operation, median), printed in the same
 * `bench NAME median=... ` format:
 *
 *   linux_getpid               a getpid() system call (the `syscall` instruction, a real trap);
 *   linux_clock_gettime_vdso   clock_gettime(CLOCK_MONOTONIC) through the vDSO, the way a libc
 *                              reads the clock: found through the auxiliary vector's
 *                              AT_SYSINFO_EHDR and the vDSO's dynamic symbol table, called
 *                              through a function pointer, no trap when the clocksource allows.
 *
 * When the vDSO or its clock_gettime cannot be found, or a call fails, or the clock does not
 * move, it prints `bench-error linux_clock_gettime_vdso: WHY` and measures nothing for it: there
 * is no silent fallback to the system call. Freestanding: no libc, so it builds with any gcc and
 * runs as a static binary in the peer's initramfs. */

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define RUNS 7
#define ITERATIONS 20000
#define SYS_write 1
#define SYS_getpid 39
#define SYS_exit 60
#define CLOCK_MONOTONIC 1
#define AT_NULL 0
#define AT_SYSINFO_EHDR 33

/* ELF64, as much as the vDSO lookup needs. */
#define PT_LOAD 1
#define PT_DYNAMIC 2
#define DT_NULL 0
#define DT_HASH 4
#define DT_STRTAB 5
#define DT_SYMTAB 6
#define DT_GNU_HASH 0x6ffffef5
#define STT_FUNC 2
#define STB_GLOBAL 1
#define STB_WEAK 2
#define SHN_UNDEF 0

typedef struct {
    u8 e_ident[16];
    u16 e_type, e_machine;
    u32 e_version;
    u64 e_entry, e_phoff, e_shoff;
    u32 e_flags;
    u16 e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
} Elf64_Ehdr;

typedef struct {
    u32 p_type, p_flags;
    u64 p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
} Elf64_Phdr;

typedef struct {
    long d_tag;
    u64 d_val;
} Elf64_Dyn;

typedef struct {
    u32 st_name;
    u8 st_info, st_other;
    u16 st_shndx;
    u64 st_value, st_size;
} Elf64_Sym;

struct timespec {
    long tv_sec;
    long tv_nsec;
};

typedef int (*clock_gettime_fn)(int clock, struct timespec *ts);

static inline u64 rdtsc(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline long syscall3(long number, long a, long b, long c) {
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return result;
}

static char line[256];
static int used;

static void put(const char *text) {
    while (*text && used < (int)sizeof line - 1) line[used++] = *text++;
}

static void flush(void) {
    syscall3(SYS_write, 1, (long)line, used);
    used = 0;
}

/* Appends value/100 with two decimals. */
static void put_centi(u64 value) {
    char digits[24];
    int n = 0;
    u64 whole = value / 100, cents = value % 100;
    do { digits[n++] = '0' + whole % 10; whole /= 10; } while (whole);
    while (n) line[used++] = digits[--n];
    line[used++] = '.';
    line[used++] = '0' + cents / 10;
    line[used++] = '0' + cents % 10;
}

static void report(const char *name, u64 per_op[RUNS]) {
    for (int i = 1; i < RUNS; i++)
        for (int j = i; j > 0 && per_op[j - 1] > per_op[j]; j--) {
            u64 t = per_op[j]; per_op[j] = per_op[j - 1]; per_op[j - 1] = t;
        }
    used = 0;
    put("bench "); put(name);
    put(" median="); put_centi(per_op[RUNS / 2]);
    put(" min="); put_centi(per_op[0]);
    put(" max="); put_centi(per_op[RUNS - 1]);
    put(" runs=7 iterations=20000\n");
    flush();
}

static void fail(const char *name, const char *why) {
    used = 0;
    put("bench-error "); put(name); put(": "); put(why); put("\n");
    flush();
}

static void measure_getpid(void) {
    u64 per_op[RUNS];
    for (int run = 0; run < RUNS; run++) {
        u64 start = rdtsc();
        for (int i = 0; i < ITERATIONS; i++) syscall3(SYS_getpid, 0, 0, 0);
        per_op[run] = (rdtsc() - start) * 100 / ITERATIONS;
    }
    report("linux_getpid", per_op);
}

static int same_name(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* The number of symbols in a DT_GNU_HASH table: one past the highest symbol any chain reaches. */
static u64 gnu_hash_symbols(const u32 *table) {
    u32 buckets = table[0], first = table[1], bloom_words = table[2];
    const u32 *bucket = (const u32 *)((const u64 *)(table + 4) + bloom_words);
    const u32 *chain = bucket + buckets;
    u32 last = 0;
    for (u32 i = 0; i < buckets; i++)
        if (bucket[i] > last) last = bucket[i];
    if (last < first) return first;
    while (!(chain[last - first] & 1)) last++;
    return (u64)last + 1;
}

/* Finds `__vdso_clock_gettime` (or `clock_gettime`) in the vDSO whose ELF header is at `base`;
 * on failure sets `*why` and returns 0. */
static clock_gettime_fn vdso_clock_gettime(u64 base, const char **why) {
    const Elf64_Ehdr *elf = (const Elf64_Ehdr *)base;
    if (elf->e_ident[0] != 0x7f || elf->e_ident[1] != 'E' || elf->e_ident[2] != 'L' ||
        elf->e_ident[3] != 'F' || elf->e_ident[4] != 2) {
        *why = "AT_SYSINFO_EHDR does not point at an ELF64 header";
        return 0;
    }
    const Elf64_Phdr *headers = (const Elf64_Phdr *)(base + elf->e_phoff);
    const Elf64_Dyn *dynamic = 0;
    u64 load_offset = 0;
    int loaded = 0;
    for (int i = 0; i < elf->e_phnum; i++) {
        if (headers[i].p_type == PT_LOAD && !loaded) {
            load_offset = base + headers[i].p_offset - headers[i].p_vaddr;
            loaded = 1;
        } else if (headers[i].p_type == PT_DYNAMIC) {
            dynamic = (const Elf64_Dyn *)(base + headers[i].p_offset);
        }
    }
    if (!loaded || !dynamic) {
        *why = "the vDSO has no PT_LOAD or no PT_DYNAMIC program header";
        return 0;
    }
    const char *strings = 0;
    const Elf64_Sym *symbols = 0;
    const u32 *hash = 0, *gnu_hash = 0;
    for (const Elf64_Dyn *entry = dynamic; entry->d_tag != DT_NULL; entry++) {
        u64 address = entry->d_val + load_offset;
        switch (entry->d_tag) {
        case DT_STRTAB: strings = (const char *)address; break;
        case DT_SYMTAB: symbols = (const Elf64_Sym *)address; break;
        case DT_HASH: hash = (const u32 *)address; break;
        case DT_GNU_HASH: gnu_hash = (const u32 *)address; break;
        }
    }
    if (!strings || !symbols || (!hash && !gnu_hash)) {
        *why = "the vDSO's dynamic section names no string table, symbol table or hash table";
        return 0;
    }
    u64 count = hash ? hash[1] : gnu_hash_symbols(gnu_hash);
    for (u64 i = 0; i < count; i++) {
        const Elf64_Sym *symbol = &symbols[i];
        u8 type = symbol->st_info & 0xf, binding = symbol->st_info >> 4;
        if (type != STT_FUNC || (binding != STB_GLOBAL && binding != STB_WEAK) ||
            symbol->st_shndx == SHN_UNDEF)
            continue;
        const char *name = strings + symbol->st_name;
        if (same_name(name, "__vdso_clock_gettime") || same_name(name, "clock_gettime"))
            return (clock_gettime_fn)(symbol->st_value + load_offset);
    }
    *why = "the vDSO's dynamic symbol table has no __vdso_clock_gettime or clock_gettime";
    return 0;
}

static void measure_vdso_clock(u64 vdso) {
    const char *name = "linux_clock_gettime_vdso";
    const char *why = "the auxiliary vector has no AT_SYSINFO_EHDR: the kernel mapped no vDSO";
    clock_gettime_fn clock_gettime = vdso ? vdso_clock_gettime(vdso, &why) : 0;
    if (!clock_gettime) {
        fail(name, why);
        return;
    }
    struct timespec first, now;
    if (clock_gettime(CLOCK_MONOTONIC, &first) != 0) {
        fail(name, "the vDSO's clock_gettime(CLOCK_MONOTONIC) did not return 0");
        return;
    }
    u64 per_op[RUNS];
    long failures = 0, sink = 0;
    for (int run = 0; run < RUNS; run++) {
        u64 start = rdtsc();
        for (int i = 0; i < ITERATIONS; i++) {
            failures += clock_gettime(CLOCK_MONOTONIC, &now);
            sink += now.tv_nsec;
        }
        per_op[run] = (rdtsc() - start) * 100 / ITERATIONS;
    }
    __asm__ volatile("" : : "r"(sink));
    if (failures != 0) {
        fail(name, "the vDSO's clock_gettime(CLOCK_MONOTONIC) returned non-zero in the timed loop");
        return;
    }
    if (now.tv_sec < first.tv_sec || (now.tv_sec == first.tv_sec && now.tv_nsec <= first.tv_nsec)) {
        fail(name, "CLOCK_MONOTONIC read through the vDSO did not move over 140000 calls");
        return;
    }
    report(name, per_op);
}

/* The process's initial stack: argc, argv[], NULL, envp[], NULL, then the auxiliary vector's
 * (type, value) pairs up to AT_NULL. */
static u64 auxiliary_value(const u64 *stack, u64 type) {
    const u64 *p = stack + 1 + stack[0] + 1;
    while (*p) p++;
    for (p++; p[0] != AT_NULL; p += 2)
        if (p[0] == type) return p[1];
    return 0;
}

__attribute__((used, noreturn)) void start_c(const u64 *stack) {
    u64 vdso = auxiliary_value(stack, AT_SYSINFO_EHDR);
    measure_getpid();
    measure_vdso_clock(vdso);
    syscall3(SYS_exit, 0, 0, 0);
    __builtin_unreachable();
}

/* The entry point: hands the initial stack pointer to start_c with the stack 16-byte aligned. */
__asm__(".globl _start\n"
        "_start:\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    hlt\n");
