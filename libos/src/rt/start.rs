//! The top of the runtime: an app's start-up and the table of programs an image carries.
//!
//! kernel-lite enters the image at `_start` (defined by [`crate::user_image!`]) once per app,
//! with the app's index. Start-up has `sys` place the app's [`AppContext`](super::AppContext)
//! at the start of the app's heap region, where the FS base points, then finds the app's
//! program by name and runs it.

/// A program an image can run: its name in bundles, and its `main`, returning the exit status.
#[derive(Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub main: fn() -> i32,
}

/// The program called `name`, if the image has it.
pub fn find_program<'a>(programs: &'a [Program], name: &str) -> Option<&'a Program> {
    programs.iter().find(|program| program.name == name)
}

/// Runs app `index` of the bundle: builds its context, then its program; never returns.
#[cfg(target_os = "none")]
pub fn start(index: usize, programs: &[Program]) -> ! {
    let Some(info) = crate::sys::app_info(index) else {
        // No context, so no console to flush.
        crate::sys::exit(126)
    };
    crate::sys::install_context(index, info);
    crate::logger::install();
    let wanted = lite_abi::decode_name(&info.program).unwrap_or("");
    match find_program(programs, wanted) {
        Some(program) => crate::process::exit((program.main)()),
        None => {
            crate::println!("no program named '{wanted}' in this image");
            crate::process::exit(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero() -> i32 {
        0
    }

    fn one() -> i32 {
        1
    }

    #[test]
    fn programs_are_found_by_name() {
        let programs = [
            Program {
                name: "a",
                main: zero,
            },
            Program {
                name: "b",
                main: one,
            },
        ];
        assert_eq!(find_program(&programs, "b").map(|p| (p.main)()), Some(1));
        assert!(find_program(&programs, "c").is_none());
    }
}
