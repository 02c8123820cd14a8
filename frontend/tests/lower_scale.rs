//! Lowering cost is linear in the Dockerfile (issue 10): a stage of n instructions whose
//! environment keeps growing (two in three are ENV) is lowered at n and at 2n, and the
//! allocations made and the heap the graph keeps must about double, not quadruple. Every
//! RUN vertex carries its environment, so a per-vertex copy of it (what lowering did
//! before `EnvMap`) makes both grow with n². Counted, never timed.

use rbuild_frontend::lower::{LowerOptions, Lowered, NoImages, lower};
use rbuild_graph::{Op, Platform};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting what the current thread allocates and frees (tests run
/// on threads of their own, so each test sees only its own work).
struct Counting;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn note(calls: u64, bytes: i64) {
    // `try_with`: the thread's own teardown may free after its locals are gone.
    let _ = CALLS.try_with(|c| c.set(c.get() + calls));
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, -(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(1, new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What scripts/gen-many-instructions.sh writes: n instructions in one stage, in threes
/// `ENV Vi_A=…`, `ENV Vi_B=${Vi_A}-b`, then a RUN reading it (every 50th a COPY).
fn dockerfile(n: usize) -> String {
    let mut s = String::from("FROM scratch\n");
    let mut small = 0;
    for i in 1..n {
        let g = (i - 1) / 3;
        match (i - 1) % 3 {
            0 => s.push_str(&format!("ENV V{g}_A=value-{g}\n")),
            1 => s.push_str(&format!("ENV V{g}_B=${{V{g}_A}}-b\n")),
            _ => {
                small += 1;
                if small % 50 == 0 {
                    s.push_str(&format!("COPY files/f{small} /data/f{small}\n"));
                } else {
                    s.push_str(&format!("RUN test \"$V{g}_B\" = value-{g}-b\n"));
                }
            }
        }
    }
    s
}

struct Cost {
    /// Allocations (and reallocations) made while lowering.
    calls: u64,
    /// Heap the lowered graph and config still hold.
    kept: i64,
    lowered: Lowered,
}

fn lower_counted(n: usize) -> Cost {
    let src = dockerfile(n);
    let opts = LowerOptions {
        dockerfile_name: "Dockerfile".into(),
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..Default::default()
    };
    let (calls0, live0) = (CALLS.with(Cell::get), LIVE.with(Cell::get));
    let lowered = match lower(&src, &opts, &NoImages) {
        Ok(l) => l,
        Err(d) => panic!("lowering failed:\n{d}"),
    };
    Cost {
        calls: CALLS.with(Cell::get) - calls0,
        kept: LIVE.with(Cell::get) - live0,
        lowered,
    }
}

#[test]
fn lowering_a_growing_environment_costs_linear_allocations_and_memory() {
    let n = 1500;
    let one = lower_counted(n);
    let two = lower_counted(2 * n);

    // The graph is what it should be: one vertex per RUN and COPY, each RUN seeing every
    // variable set before it, and only those.
    let runs: Vec<_> = two
        .lowered
        .graph
        .iter()
        .filter_map(|(_, v)| match &v.op {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect();
    // Small steps are instructions 3g+3 (1-based, after FROM) for g = 0..=g_last.
    let g = (2 * n - 4) / 3;
    assert_eq!(runs.len(), (g + 1) - (g + 1) / 50);
    let last = runs.last().expect("RUN vertices");
    assert_eq!(
        last.env.get(&format!("V{g}_B")),
        Some(&*format!("value-{g}-b"))
    );
    assert_eq!(last.env.get(&format!("V{}_A", g + 1)), None);
    assert_eq!(last.env.len(), 2 * (g + 1) + 1, "PATH and two per group");
    assert_eq!(runs[0].env.len(), 3, "the first RUN sees PATH, V0_A, V0_B");

    // Doubling the file about doubles the cost. Linear lowering gives ratios near 2; a
    // copy of the environment per RUN gives near 4.
    let calls = two.calls as f64 / one.calls as f64;
    let kept = two.kept as f64 / one.kept as f64;
    assert!(
        calls < 2.6,
        "allocations grew {calls:.2}× for twice the instructions ({} → {})",
        one.calls,
        two.calls
    );
    assert!(
        kept < 2.6,
        "kept heap grew {kept:.2}× for twice the instructions ({} → {} bytes)",
        one.kept,
        two.kept
    );
}
