pub use green_runtime::*;
