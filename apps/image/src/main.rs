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
}
