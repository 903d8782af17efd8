//! The image's entry point, declared by the image crate through [`crate::user_image!`].

/// Declares the programs of a user image and its entry point. Used once, by the image crate:
///
/// ```text
/// libos::user_image! {
///     "hello" => hello::main,
/// }
/// ```
#[macro_export]
macro_rules! user_image {
    ($( $(#[$attr:meta])* $name:literal => $main:path ),* $(,)?) => {
        static LIBOS_PROGRAMS: &[$crate::Program] = &[
            $( $(#[$attr])* $crate::Program { name: $name, main: $main }, )*
        ];

        /// Where kernel-lite enters the image, once per app, with the app's bundle index.
        #[unsafe(no_mangle)]
        pub extern "C" fn _start(app_index: u64, _info_page: u64) -> ! {
            $crate::rt::start(app_index as usize, LIBOS_PROGRAMS)
        }
    };
}
