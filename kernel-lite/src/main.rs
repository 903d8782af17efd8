//! kernel-lite: the only privileged code of the library OS.
//!
//! It does what ring 3 cannot: set up the CPU (GDT, TSS, IDT, protection features), build the
//! one address space (kernel-lite supervisor-only in the upper half, the user image and the apps'
//! slots in the lower half), take interrupts and exceptions, switch between apps, and answer the
//! small numbered kcall table. Everything an app uses day to day — heap, clock, console
//! formatting, and later the network stack and file system — lives in libos, in ring 3.
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

extern crate alloc;

mod apps;
mod console;
mod cpu;
mod devices;
mod fault;
mod interrupts;
mod kcall;
mod loader;
mod machine;
mod mm;
mod net;
mod storage;
mod timer;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{BootInfo, entry_point};
use lite_abi::bundle::Bundle;
use lite_abi::exit::ImageOutcome;

/// Everything the bootloader maps for us goes into the upper half, so the lower half is free
/// for ring 3 alone.
const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.dynamic_range_start = Some(0xffff_8000_0000_0000);
    config.kernel_stack_size = 128 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

/// The kernel heap: this much, plus [`KERNEL_HEAP_PER_APP`] for each app of the bundle.
const KERNEL_HEAP_BASE_BYTES: u64 = 512 * 1024;
const KERNEL_HEAP_PER_APP: u64 = 1024;

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    let boot_info: &'static BootInfo = boot_info;
    console::init();
    kprintln!("kernel-lite: starting");
    cpu::init();
    interrupts::init();
    let features = cpu::enable_protection().unwrap_or_else(|refused| {
        kprintln!("kernel-lite: refusing to start: {refused}");
        machine::exit(ImageOutcome::KernelPanic)
    });
    kprintln!("kernel-lite: cpu protection: {features}");

    let ramdisk = match boot_info.ramdisk_addr.into_option() {
        // SAFETY: the bootloader mapped the ramdisk at this address with this length, read-only
        // to us and never reused, for the whole life of the kernel.
        Some(addr) => unsafe {
            core::slice::from_raw_parts(addr as *const u8, boot_info.ramdisk_len as usize)
        },
        None => machine::halt_with(ImageOutcome::KernelPanic, "no boot bundle in the ramdisk"),
    };
    let bundle = Bundle::parse(ramdisk).unwrap_or_else(|error| {
        kprintln!("kernel-lite: boot bundle refused: {error}");
        machine::halt_with(ImageOutcome::KernelPanic, "bad boot bundle")
    });

    let physical_offset = boot_info
        .physical_memory_offset
        .into_option()
        .unwrap_or_else(|| machine::halt_with(ImageOutcome::KernelPanic, "no physical memory map"));
    // The kernel heap holds a record per app and little else (frames are tracked in a bitmap
    // outside it), so it is sized by the bundle.
    let heap_bytes = KERNEL_HEAP_BASE_BYTES + bundle.app_count() as u64 * KERNEL_HEAP_PER_APP;
    // SAFETY: the bootloader maps all physical memory at this offset (BOOTLOADER_CONFIG asks for
    // it), the memory map describes this machine, and nothing else has allocated frames yet.
    unsafe { mm::init(physical_offset, &boot_info.memory_regions, heap_bytes) }.unwrap_or_else(
        |error| {
            kprintln!("kernel-lite: memory: {error}");
            machine::exit(ImageOutcome::KernelPanic)
        },
    );
    cpu::install_fault_stacks().unwrap_or_else(|error| {
        kprintln!("kernel-lite: fault stacks: {error}");
        machine::exit(ImageOutcome::KernelPanic)
    });
    const DMA_CHECK_PAGES: u64 = 16;
    match mm::dma::self_check(DMA_CHECK_PAGES) {
        Ok(at) => kprintln!(
            "kernel-lite: dma: {} KiB contiguous at {at:#x}, aligned, zeroed, returned",
            DMA_CHECK_PAGES * 4
        ),
        Err(error) => {
            kprintln!("kernel-lite: dma: {error}");
            machine::exit(ImageOutcome::KernelPanic)
        }
    }

    let devices = devices::init(
        physical_offset,
        &boot_info.memory_regions,
        boot_info.rsdp_addr.into_option(),
    );
    let (tsc_hz, timer_source) = timer::init(devices.local_apic());
    kprintln!(
        "kernel-lite: TSC {} MHz; timer: {timer_source}",
        tsc_hz / 1_000_000
    );
    devices::rtc::check_and_report();
    devices::msix_check::check_and_report(devices);
    net::init(devices, bundle.app_count());
    storage::init(devices, &bundle);
    kcall::init();
    kprintln!("kernel-lite: kcall gate: {}", cpu::gate_registers());

    let image = loader::load(&bundle, tsc_hz).unwrap_or_else(|error| {
        kprintln!("kernel-lite: user image refused: {error}");
        machine::halt_with(ImageOutcome::KernelPanic, "bad user image")
    });
    apps::run(&bundle, image)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("kernel-lite: PANIC: {info}");
    machine::exit(ImageOutcome::KernelPanic)
}
