//! The user image: libos and the programs a bundle names, as one ELF that kernel-lite maps into
//! ring 3. Each app of the bundle enters it at `_start` with its own index.
#![no_std]
#![no_main]

libos::user_image! {
    #[cfg(feature = "hello")]
    "hello" => hello::main,
    #[cfg(feature = "selftest")]
    "kcalls" => selftest::kcalls,
    #[cfg(feature = "selftest")]
    "fault-kernel-write" => selftest::fault_kernel_write,
    #[cfg(feature = "selftest")]
    "fault-hlt" => selftest::fault_hlt,
    #[cfg(feature = "selftest")]
    "fault-cli" => selftest::fault_cli,
    #[cfg(feature = "selftest")]
    "fault-mov-cr3" => selftest::fault_mov_cr3,
    #[cfg(feature = "selftest")]
    "fault-stack-overflow" => selftest::fault_stack_overflow,
    #[cfg(feature = "selftest")]
    "fault-panic" => selftest::fault_panic,
    #[cfg(feature = "bench")]
    "call-bench" => bench::main,
    #[cfg(feature = "bench")]
    "switch-bench" => bench::switch_bench,
    #[cfg(feature = "selftest")]
    "crash-panic" => selftest::crash_panic,
    #[cfg(feature = "selftest")]
    "crash-page-fault" => selftest::crash_page_fault,
    #[cfg(feature = "selftest")]
    "crash-general-protection" => selftest::crash_general_protection,
    #[cfg(feature = "selftest")]
    "crash-invalid-opcode" => selftest::crash_invalid_opcode,
    #[cfg(feature = "selftest")]
    "crash-stack-overflow" => selftest::crash_stack_overflow,
    #[cfg(feature = "selftest")]
    "crash-debug-trap" => selftest::crash_debug_trap,
    #[cfg(feature = "selftest")]
    "crash-out-of-memory" => selftest::crash_out_of_memory,
    #[cfg(feature = "selftest")]
    "crash-holding-lock" => selftest::crash_holding_lock,
    #[cfg(feature = "selftest")]
    "fill" => selftest::fill,
    #[cfg(feature = "selftest")]
    "hog" => selftest::hog,
    #[cfg(feature = "selftest")]
    "forger" => selftest::forger,
    #[cfg(feature = "selftest")]
    "spinner" => selftest::spinner,
    #[cfg(feature = "selftest")]
    "sleeper" => selftest::sleeper,
    #[cfg(feature = "demo")]
    "counter" => demo::counter,
    #[cfg(feature = "demo")]
    "quiet-worker" => demo::quiet_worker,
    #[cfg(feature = "demo")]
    "crasher" => demo::crasher,
    #[cfg(feature = "selftest")]
    "set-ac" => selftest::set_ac,
    #[cfg(feature = "http")]
    "http" => http::main,
    #[cfg(feature = "echo")]
    "echo" => echo::main,
    #[cfg(feature = "kv")]
    "kv" => kv::main,
    #[cfg(feature = "selftest")]
    "net-probe" => selftest::net_probe,
    #[cfg(feature = "selftest")]
    "spoofer" => selftest::spoofer,
    #[cfg(feature = "selftest")]
    "net-crasher" => selftest::net_crasher,
    #[cfg(feature = "selftest")]
    "ring-scribbler" => selftest::ring_scribbler,
    #[cfg(feature = "selftest")]
    "disk-probe" => selftest::disk_probe::main,
}
