/* The Linux guest's side of the `calls` benchmark: TSC ticks per getpid() system call, measured
 * the way libos's call-bench measures its calls (7 runs x 20000 iterations, median per
 * operation), printed in the same `bench NAME median=... ` format. Freestanding: no libc, so it
 * builds with any gcc and runs as a static binary in the peer's initramfs. */

typedef unsigned long u64;

#define RUNS 7
#define ITERATIONS 20000
#define SYS_write 1
#define SYS_getpid 39
#define SYS_exit 60

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
    while (*text) line[used++] = *text++;
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

static void measure(const char *name, long number) {
    u64 per_op[RUNS];
    for (int run = 0; run < RUNS; run++) {
        u64 start = rdtsc();
        for (int i = 0; i < ITERATIONS; i++) syscall3(number, 0, 0, 0);
        per_op[run] = (rdtsc() - start) * 100 / ITERATIONS;
    }
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
    syscall3(SYS_write, 1, (long)line, used);
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
    measure("linux_getpid", SYS_getpid);
    syscall3(SYS_exit, 0, 0, 0);
    __builtin_unreachable();
}
