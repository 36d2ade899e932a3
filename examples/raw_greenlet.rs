//! Raw greenlets with explicit switching: the classic example of Python's greenlet docs.
//!
//! Run it with `cargo run --example raw_greenlet`. It prints 12, 56, 34 and the value `task`
//! returned; 78 is never printed, because nothing switches back to `subtask`.

use std::cell::OnceCell;
use std::rc::Rc;

use green::raw::{RawGreenlet, Value};

fn unit() -> Value {
    Box::new(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `subtask` must switch back to `task`, which does not exist yet: it finds it in this slot.
    let task_slot: Rc<OnceCell<RawGreenlet>> = Rc::default();
    let subtask = RawGreenlet::new({
        let task_slot = task_slot.clone();
        move |_| {
            println!("56");
            task_slot.get().expect("task is set").switch(unit());
            println!("78");
            unit()
        }
    });
    let task = RawGreenlet::new({
        let subtask = subtask.clone();
        move |_| {
            println!("12");
            subtask.switch(unit());
            println!("34");
            Box::new("task finished")
        }
    });
    task_slot.set(task.clone()).expect("set once");

    // Starts `task`; returns when `task` returns into its parent, this root context.
    let returned = task.switch(unit());
    println!(
        "task returned {:?}",
        returned.downcast_ref::<&str>().expect("a &str")
    );
    println!(
        "task dead: {}, subtask dead: {}",
        task.is_dead(),
        subtask.is_dead()
    );

    // Values go both ways: each switch hands a number in, the greenlet hands its double back.
    let doubler = RawGreenlet::new(|first: Value| {
        let parent = RawGreenlet::current().parent().expect("a parent");
        let mut n = *first.downcast::<u64>().expect("a u64");
        loop {
            n = *parent
                .switch(Box::new(2 * n))
                .downcast::<u64>()
                .expect("a u64");
        }
    });
    for n in [1u64, 21, 100] {
        let doubled = *doubler
            .switch(Box::new(n))
            .downcast::<u64>()
            .expect("a u64");
        println!("{n} doubled is {doubled}");
    }
    // Dropping the suspended `doubler` throws RawGreenletExit into it, so its stack unwinds.
}
