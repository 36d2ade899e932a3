//! The crawler's command line as a binary of its own (`examples/crawl.rs` is the same program):
//! `green-crawl --help`.

fn main() {
    green_crawl::cli::main();
}
