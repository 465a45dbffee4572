//! Concurrent histories of get/put/delete through a `StorageManager`, and a
//! linearizability checker for them.
//!
//! The contract checked: per key, the history is linearizable as a
//! read/write register. A get returns the value of the latest write
//! linearized before it (a delete writes "absent"; before any write the key
//! is absent). Failed operations are indeterminate: a failed put or delete
//! may or may not have taken effect, at any point after its invocation (as
//! Knossos and Porcupine treat crashed operations: its completion is at
//! infinity); a failed get constrains nothing (availability is not checked,
//! staleness is).
//!
//! The checker is the Wing-Gong search as improved by Lowe (a linked list of
//! call and return events; linearize a pending call, backtrack at a return),
//! with Porcupine's memoization of (set of linearized operations, register
//! state), over each key separately (a register history is linearizable iff
//! each key's is). Values must be unique per write, which keeps the search
//! small: [`Workload`] writes `c<client>-<seq>`.
//!
//! On a violation, [`Violation`] holds the smallest offending sub-history it
//! could find: the ops of the key involved, cut to the shortest failing prefix,
//! then reduced one operation at a time. Only removals that cannot create a
//! violation are tried (a get; a write no remaining get could have read), so
//! every operation printed is part of the anomaly.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage_host::StorageManager;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `get(key)`.
    Get,
    /// `put(key, value)`.
    Put(Vec<u8>),
    /// `delete(key)`.
    Delete,
}

/// What it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    /// A get's answer (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A put or delete acknowledged.
    Done,
    /// Any operation that returned an error (the message).
    Failed(String),
}

/// One operation of a history: who, what, when (since the recording began),
/// and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client (task) that issued it.
    pub client: usize,
    /// The key.
    pub key: String,
    /// The request.
    pub call: Call,
    /// The answer.
    pub ret: Ret,
    /// When the client called.
    pub invoke: Duration,
    /// When the answer came back.
    pub complete: Duration,
}

impl Operation {
    fn failed(&self) -> bool {
        matches!(self.ret, Ret::Failed(_))
    }
    fn is_write(&self) -> bool {
        !matches!(self.call, Call::Get)
    }
}

fn show(v: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(v))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, arg) = match &self.call {
            Call::Get => ("get", String::new()),
            Call::Put(v) => ("put", show(v)),
            Call::Delete => ("delete", String::new()),
        };
        let ret = match &self.ret {
            Ret::Value(Some(v)) => format!("-> {}", show(v)),
            Ret::Value(None) => "-> absent".to_string(),
            Ret::Done => "ok".to_string(),
            Ret::Failed(e) if self.is_write() => format!("FAILED (indeterminate): {e}"),
            Ret::Failed(e) => format!("FAILED: {e}"),
        };
        write!(
            f,
            "client {:<2} {:<6} {:<14} [{:>12} .. {:>12}]  {ret}",
            self.client,
            op,
            arg,
            ms(self.invoke),
            ms(self.complete)
        )
    }
}

/// A recorded history.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The operations, in no particular order.
    pub ops: Vec<Operation>,
}

/// What a successful check covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations checked (all of them, failed ones included).
    pub ops: usize,
    /// Keys (independent registers).
    pub keys: usize,
    /// Operations that returned an error.
    pub failed: usize,
    /// Gets that returned a value or absent.
    pub reads: usize,
}

/// A history that is not linearizable, cut down to the operations involved.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key whose register history is not linearizable.
    pub key: String,
    /// How many operations that key had.
    pub key_ops: usize,
    /// The smallest non-linearizable sub-history found, by invocation time.
    pub ops: Vec<Operation>,
    /// Set when the search gave up (too many states): not a proven violation.
    pub gave_up: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.gave_up {
            writeln!(
                f,
                "key {:?}: the linearizability search gave up after {SEARCH_BUDGET} steps on {} operations (make the run shorter or use fewer clients)",
                self.key, self.key_ops
            )?;
        } else {
            writeln!(
                f,
                "key {:?} is not linearizable: {} of its {} operations form the smallest offending sub-history (times since the run began; a failed write may have taken effect):",
                self.key,
                self.ops.len(),
                self.key_ops
            )?;
        }
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Search steps per key before the checker gives up.
pub const SEARCH_BUDGET: u64 = 50_000_000;

/// Checks that every key's history is linearizable (see the module docs).
pub fn check(history: &History) -> Result<Summary, Box<Violation>> {
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in &history.ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort();
    for key in &keys {
        let ops: Vec<Operation> = by_key[key].iter().map(|&o| o.clone()).collect();
        match linearizable(&ops) {
            Outcome::Yes => {}
            Outcome::No => {
                return Err(Box::new(Violation {
                    key: key.to_string(),
                    key_ops: ops.len(),
                    ops: shrink(ops),
                    gave_up: false,
                }));
            }
            Outcome::GaveUp => {
                let mut ops = ops;
                ops.sort_by_key(|o| o.invoke);
                return Err(Box::new(Violation {
                    key: key.to_string(),
                    key_ops: ops.len(),
                    ops: Vec::new(),
                    gave_up: true,
                }));
            }
        }
    }
    Ok(Summary {
        ops: history.ops.len(),
        keys: keys.len(),
        failed: history.ops.iter().filter(|o| o.failed()).count(),
        reads: history
            .ops
            .iter()
            .filter(|o| matches!(o.ret, Ret::Value(_)))
            .count(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Yes,
    No,
    GaveUp,
}

/// Whether write `w` could be what one of the gets of `gets` read, in some
/// linearization. A put: a get returned its (unique) value. A delete: a get
/// answered "absent", completed after the delete was invoked, and no
/// acknowledged write of `witnesses` certainly falls between the two (was
/// invoked after the delete completed and completed before the get began).
/// `witnesses` must be writes that stay in the history.
fn observed(w: &Operation, gets: &[Operation], witnesses: &[Operation]) -> bool {
    match &w.call {
        Call::Put(v) => gets
            .iter()
            .any(|g| matches!(g.call, Call::Get) && g.ret == Ret::Value(Some(v.clone()))),
        Call::Delete => {
            // The earliest completion of a write certainly after `w`.
            let after = if w.failed() {
                None
            } else {
                witnesses
                    .iter()
                    .filter(|x| x.is_write() && x.ret == Ret::Done && x.invoke > w.complete)
                    .map(|x| x.complete)
                    .min()
            };
            gets.iter().any(|g| {
                matches!(g.call, Call::Get)
                    && g.ret == Ret::Value(None)
                    && g.complete > w.invoke
                    && after.is_none_or(|a| g.invoke <= a)
            })
        }
        Call::Get => false,
    }
}

/// One key's operations in the checker's form.
struct Model {
    invoke: Vec<u64>,
    complete: Vec<u64>,
    /// `(is_write, value id)`; id 0 is "absent".
    kind: Vec<(bool, u32)>,
    /// For a failed delete, its rank among the failed deletes by invocation
    /// time. They are interchangeable (same effect, no deadline), so the
    /// search linearizes them in this order only: without it, k of them
    /// pending make 2^k states.
    failed_delete_rank: Vec<Option<u32>>,
}

fn model(ops: &[Operation]) -> Model {
    let mut ids: HashMap<&[u8], u32> = HashMap::new();
    let mut next = 1u32;
    for op in ops {
        if let Call::Put(v) = &op.call {
            ids.entry(v.as_slice()).or_insert_with(|| {
                next += 1;
                next - 1
            });
        }
    }
    let mut m = Model {
        invoke: Vec::new(),
        complete: Vec::new(),
        kind: Vec::new(),
        failed_delete_rank: Vec::new(),
    };
    for op in ops {
        let kind = match (&op.call, &op.ret) {
            // A failed get constrains nothing.
            (Call::Get, Ret::Failed(_)) => continue,
            // A failed write nobody could have read is as if never issued
            // (it can always be linearized last).
            (_, Ret::Failed(_)) if !observed(op, ops, ops) => continue,
            (Call::Get, Ret::Value(None)) => (false, 0),
            (Call::Get, Ret::Value(Some(v))) => {
                // A value never written gets an id no write has.
                let id = *ids.entry(v.as_slice()).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
                (false, id)
            }
            (Call::Put(v), _) => (true, ids[v.as_slice()]),
            (Call::Delete, _) => (true, 0),
            (Call::Get, Ret::Done) => panic!("a get answered like a write: {op}"),
        };
        m.invoke.push(op.invoke.as_nanos() as u64);
        m.complete.push(if op.failed() {
            u64::MAX
        } else {
            op.complete.as_nanos() as u64
        });
        m.kind.push(kind);
        m.failed_delete_rank
            .push((op.failed() && op.call == Call::Delete).then_some(0));
    }
    let mut fd: Vec<usize> = (0..m.kind.len())
        .filter(|&i| m.failed_delete_rank[i].is_some())
        .collect();
    fd.sort_by_key(|&i| m.invoke[i]);
    for (rank, i) in fd.into_iter().enumerate() {
        m.failed_delete_rank[i] = Some(rank as u32);
    }
    m
}

fn linearizable(ops: &[Operation]) -> Outcome {
    search(&model(ops), SEARCH_BUDGET)
}

/// Wing-Gong-Lowe with memoization. Entries 1..=2n of a doubly linked list
/// (0 is the head): call and return events sorted by time, a call before a
/// return at the same instant (concurrent).
fn search(m: &Model, budget: u64) -> Outcome {
    let n = m.kind.len();
    if n == 0 {
        return Outcome::Yes;
    }
    // (time, is_return, op)
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for i in 0..n {
        events.push((m.invoke[i], false, i));
        events.push((m.complete[i], true, i));
    }
    events.sort();
    const NIL: usize = usize::MAX;
    let len = 2 * n + 1;
    let mut next = vec![NIL; len];
    let mut prev = vec![NIL; len];
    let mut op_of = vec![0usize; len];
    let mut is_call = vec![false; len];
    let mut ret_of_op = vec![0usize; n];
    let mut call_of_op = vec![0usize; n];
    let mut last = 0usize;
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let e = k + 1;
        op_of[e] = op;
        is_call[e] = !is_ret;
        if is_ret {
            ret_of_op[op] = e;
        } else {
            call_of_op[op] = e;
        }
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut entry = next[0];
    let mut steps = 0u64;
    // Failed deletes linearized so far (always ranks 0..this).
    let mut failed_deletes = 0u32;

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize, r: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
        next[prev[r]] = next[r];
        if next[r] != NIL {
            prev[next[r]] = prev[r];
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize, r: usize| {
        if next[r] != NIL {
            prev[next[r]] = r;
        }
        next[prev[r]] = r;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
        next[prev[e]] = e;
    };

    loop {
        if next[0] == NIL {
            return Outcome::Yes;
        }
        steps += 1;
        if steps > budget {
            return Outcome::GaveUp;
        }
        debug_assert!(entry != NIL, "the list always ends with a return");
        if is_call[entry] {
            let op = op_of[entry];
            let (write, v) = m.kind[op];
            let canonical = m.failed_delete_rank[op].is_none_or(|r| r == failed_deletes);
            let ok = canonical && (write || state == v);
            let new_state = if write { v } else { state };
            let mut advanced = false;
            if ok {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    if m.failed_delete_rank[op].is_some() {
                        failed_deletes += 1;
                    }
                    stack.push((entry, state));
                    state = new_state;
                    lift(&mut next, &mut prev, entry, ret_of_op[op]);
                    entry = next[0];
                    advanced = true;
                } else {
                    linearized[op / 64] &= !(1 << (op % 64));
                }
            }
            if !advanced {
                entry = next[entry];
            }
        } else {
            let Some((e, s)) = stack.pop() else {
                return Outcome::No;
            };
            let op = op_of[e];
            if m.failed_delete_rank[op].is_some() {
                failed_deletes -= 1;
            }
            state = s;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, e, ret_of_op[op]);
            entry = next[e];
        }
    }
}

/// Reduces a non-linearizable key history to a small non-linearizable
/// sub-history (see the module docs for why each removal is sound).
fn shrink(mut ops: Vec<Operation>) -> Vec<Operation> {
    ops.sort_by_key(|o| o.invoke);
    // Failed gets say nothing.
    ops.retain(|o| !(matches!(o.call, Call::Get) && o.failed()));
    // Shortest failing prefix: the gets invoked before T, and the writes
    // invoked before T or possibly read by one of those gets. Failure is
    // monotone in T.
    let prefix = |t: usize, ops: &[Operation]| -> Vec<Operation> {
        let limit = ops[t].invoke;
        let (early, late): (Vec<Operation>, Vec<Operation>) =
            ops.iter().cloned().partition(|o| o.invoke <= limit);
        let mut kept = early.clone();
        kept.extend(
            late.into_iter()
                .filter(|o| o.is_write() && observed(o, &early, &early)),
        );
        kept.sort_by_key(|o| o.invoke);
        kept
    };
    let (mut lo, mut hi) = (0usize, ops.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if linearizable(&prefix(mid, &ops)) == Outcome::No {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut ops = prefix(lo, &ops);
    // Then remove chunks, halving their size (as delta debugging does), until
    // no single operation can go. Bounded so that a long failing prefix does
    // not take minutes.
    let mut checks = 0usize;
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < ops.len() && checks < MAX_SHRINK_CHECKS {
            let end = (i + chunk).min(ops.len());
            let candidate = remove_range(&ops, i, end);
            if candidate.len() < ops.len() {
                checks += 1;
                if linearizable(&candidate) == Outcome::No {
                    ops = candidate;
                    changed = true;
                    continue;
                }
            }
            i = end;
        }
        if checks >= MAX_SHRINK_CHECKS || (chunk == 1 && !changed) {
            break;
        }
        if !changed {
            chunk = chunk.div_ceil(2).max(1);
        }
    }
    ops
}

/// Linearizability checks one shrink may spend.
const MAX_SHRINK_CHECKS: usize = 3000;

/// `ops` without the gets of `ops[from..to]`, and without the writes of
/// that range no remaining get could have read (removals that cannot
/// create a violation).
fn remove_range(ops: &[Operation], from: usize, to: usize) -> Vec<Operation> {
    let outside: Vec<Operation> = ops
        .iter()
        .enumerate()
        .filter(|(j, _)| !(from..to).contains(j))
        .map(|(_, o)| o.clone())
        .collect();
    ops.iter()
        .enumerate()
        .filter(|(j, o)| {
            !(from..to).contains(j) || (o.is_write() && observed(o, &outside, &outside))
        })
        .map(|(_, o)| o.clone())
        .collect()
}

/// Records operations through a manager from several tasks.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, client: usize, key: &str, call: Call, ret: Ret, invoke: Instant) {
        let complete = self.start.elapsed();
        self.ops.lock().unwrap().push(Operation {
            client,
            key: key.to_string(),
            call,
            ret,
            invoke: invoke.duration_since(self.start),
            complete,
        });
    }

    /// `manager.get(key)`, recorded.
    pub async fn get(&self, m: &StorageManager, client: usize, key: &str) -> Ret {
        let t = Instant::now();
        let ret = match m.get(key).await {
            Ok(v) => Ret::Value(v),
            Err(e) => Ret::Failed(e.to_string()),
        };
        self.record(client, key, Call::Get, ret.clone(), t);
        ret
    }

    /// `manager.put(key, value)`, recorded.
    pub async fn put(&self, m: &StorageManager, client: usize, key: &str, value: Vec<u8>) -> Ret {
        let t = Instant::now();
        let ret = match m.put(key, value.clone()).await {
            Ok(()) => Ret::Done,
            Err(e) => Ret::Failed(e.to_string()),
        };
        self.record(client, key, Call::Put(value), ret.clone(), t);
        ret
    }

    /// `manager.delete(key)`, recorded.
    pub async fn delete(&self, m: &StorageManager, client: usize, key: &str) -> Ret {
        let t = Instant::now();
        let ret = match m.delete(key).await {
            Ok(()) => Ret::Done,
            Err(e) => Ret::Failed(e.to_string()),
        };
        self.record(client, key, Call::Delete, ret.clone(), t);
        ret
    }

    /// Time since the recording began (the clock of [`Operation::invoke`]).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The history so far.
    pub fn history(&self) -> History {
        History {
            ops: self.ops.lock().unwrap().clone(),
        }
    }
}

/// A small deterministic PRNG (SplitMix64), so a seed replays a run's
/// choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Random get/put/delete traffic from concurrent clients over a few keys.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent client tasks.
    pub clients: usize,
    /// The keys (`<prefix>k0`, `<prefix>k1`, ...).
    pub keys: usize,
    /// Prepended to every key.
    pub key_prefix: String,
    /// Percent of operations that are gets (the rest: 4/5 puts, 1/5 deletes).
    pub get_percent: u64,
    /// Longest pause between two operations of a client (uniform from 0).
    pub max_think: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 6,
            keys: 3,
            key_prefix: String::new(),
            get_percent: 55,
            max_think: Duration::from_millis(2),
        }
    }
}

impl Workload {
    /// Runs the clients, each its own task (on a multi-threaded runtime they
    /// run in parallel), until `until` (checked between operations),
    /// recording into `recorder`. Client `c` draws from its own generator
    /// derived from `seed`. Panics if a client task panicked.
    pub async fn run(
        &self,
        manager: &StorageManager,
        recorder: &Arc<Recorder>,
        seed: u64,
        until: Instant,
    ) {
        let tasks: Vec<_> = (0..self.clients)
            .map(|c| {
                let mut rng = Rng::new(seed.wrapping_mul(0x1000_0001) ^ (c as u64 + 1));
                let (manager, recorder, w) = (manager.clone(), Arc::clone(recorder), self.clone());
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    while Instant::now() < until {
                        let key = format!("{}k{}", w.key_prefix, rng.below(w.keys as u64));
                        let roll = rng.below(100);
                        if roll < w.get_percent {
                            recorder.get(&manager, c, &key).await;
                        } else if roll < w.get_percent + (100 - w.get_percent) * 4 / 5 {
                            seq += 1;
                            let value = format!("c{c}-{seq}").into_bytes();
                            recorder.put(&manager, c, &key, value).await;
                        } else {
                            recorder.delete(&manager, c, &key).await;
                        }
                        let think = rng.below(w.max_think.as_micros() as u64 + 1);
                        if think > 0 {
                            tokio::time::sleep(Duration::from_micros(think)).await;
                        } else {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("a client task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, call: Call, ret: Ret, invoke: u64, complete: u64) -> Operation {
        Operation {
            client,
            key: "k".into(),
            call,
            ret,
            invoke: Duration::from_millis(invoke),
            complete: Duration::from_millis(complete),
        }
    }
    fn put(c: usize, v: &str, i: u64, e: u64) -> Operation {
        op(c, Call::Put(v.into()), Ret::Done, i, e)
    }
    fn put_failed(c: usize, v: &str, i: u64, e: u64) -> Operation {
        op(c, Call::Put(v.into()), Ret::Failed("x".into()), i, e)
    }
    fn del(c: usize, i: u64, e: u64) -> Operation {
        op(c, Call::Delete, Ret::Done, i, e)
    }
    fn get(c: usize, v: Option<&str>, i: u64, e: u64) -> Operation {
        op(c, Call::Get, Ret::Value(v.map(|s| s.into())), i, e)
    }
    fn get_failed(c: usize, i: u64, e: u64) -> Operation {
        op(c, Call::Get, Ret::Failed("unavailable".into()), i, e)
    }
    fn h(ops: Vec<Operation>) -> History {
        History { ops }
    }

    #[test]
    fn sequential_and_concurrent_histories_that_are_linearizable() {
        // Sequential: put, get, delete, get absent.
        let ok = h(vec![
            get(0, None, 0, 1),
            put(0, "a", 2, 3),
            get(1, Some("a"), 4, 5),
            del(1, 6, 7),
            get(0, None, 8, 9),
        ]);
        assert_eq!(check(&ok).unwrap().ops, 5);
        // A read concurrent with a write may see either value.
        for seen in [Some("a"), Some("b")] {
            let ok = h(vec![
                put(0, "a", 0, 1),
                put(1, "b", 2, 10),
                get(2, seen, 3, 4),
            ]);
            check(&ok).unwrap();
        }
        // Two concurrent reads may see the write ordered either way, as
        // long as one order explains both: old then new is fine.
        let ok = h(vec![
            put(0, "a", 0, 1),
            put(1, "b", 2, 20),
            get(2, Some("a"), 3, 4),
            get(3, Some("b"), 5, 6),
            get(2, Some("b"), 7, 8),
        ]);
        check(&ok).unwrap();
        // A failed get constrains nothing; a failed write may have happened...
        let ok = h(vec![
            put(0, "a", 0, 1),
            get_failed(1, 2, 3),
            put_failed(0, "b", 4, 5),
            get(1, Some("b"), 100, 101),
            get(1, Some("b"), 102, 103),
        ]);
        check(&ok).unwrap();
        // ...or not.
        let ok = h(vec![
            put(0, "a", 0, 1),
            put_failed(0, "b", 4, 5),
            get(1, Some("a"), 100, 101),
        ]);
        check(&ok).unwrap();
        // A failed write may take effect long after it returned.
        let ok = h(vec![
            put(0, "a", 0, 1),
            put_failed(0, "b", 2, 3),
            get(1, Some("a"), 10, 11),
            get(1, Some("b"), 20, 21),
        ]);
        check(&ok).unwrap();
        // Several keys are independent registers.
        let mut other = put(0, "z", 0, 1);
        other.key = "other".into();
        let ok = h(vec![put(0, "a", 0, 1), other, get(1, Some("a"), 2, 3)]);
        assert_eq!(check(&ok).unwrap().keys, 2);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let bad = h(vec![
            put(0, "a", 0, 1),
            put(0, "b", 2, 3),
            get(1, Some("a"), 4, 5),
            get(2, Some("b"), 6, 7),
        ]);
        let v = check(&bad).unwrap_err();
        assert!(!v.gave_up);
        // The last get is not needed to show it.
        assert_eq!(v.ops.len(), 3, "{v}");
        assert!(
            v.ops
                .iter()
                .all(|o| o.call != Call::Get || o.ret == Ret::Value(Some("a".into()))),
            "{v}"
        );
        let text = v.to_string();
        assert!(
            text.contains("not linearizable") && text.contains("\"b\""),
            "{text}"
        );
        // An absent read after an acknowledged write too.
        let bad = h(vec![put(0, "a", 0, 1), get(1, None, 2, 3)]);
        check(&bad).unwrap_err();
        // And a deleted value read back.
        let bad = h(vec![
            put(0, "a", 0, 1),
            del(0, 2, 3),
            get(1, Some("a"), 4, 5),
        ]);
        check(&bad).unwrap_err();
    }

    #[test]
    fn a_value_never_written_is_caught() {
        let bad = h(vec![put(0, "a", 0, 1), get(1, Some("zzz"), 2, 3)]);
        let v = check(&bad).unwrap_err();
        assert_eq!(v.ops.len(), 1, "the read alone shows it: {v}");
    }

    #[test]
    fn a_failed_write_seen_then_unseen_is_caught() {
        // The failed put of "b" was read, so it took effect; the later read
        // of "a" (no write of "a" since) cannot be explained.
        let bad = h(vec![
            put(0, "a", 0, 1),
            put_failed(0, "b", 2, 3),
            get(1, Some("b"), 4, 5),
            get(1, Some("a"), 6, 7),
        ]);
        let v = check(&bad).unwrap_err();
        assert_eq!(v.ops.len(), 4, "{v}");
        // The same with a failed delete: absent, then the old value again.
        let bad = h(vec![
            put(0, "a", 0, 1),
            op(0, Call::Delete, Ret::Failed("partial".into()), 2, 3),
            get(1, None, 4, 5),
            get(1, Some("a"), 6, 7),
        ]);
        check(&bad).unwrap_err();
    }

    #[test]
    fn non_monotonic_concurrent_reads_are_caught() {
        // While "b" is being written, one client sees "b" and a later read
        // (after the first returned) sees "a" again.
        let bad = h(vec![
            put(0, "a", 0, 1),
            put(1, "b", 2, 50),
            get(2, Some("b"), 3, 4),
            get(3, Some("a"), 5, 6),
        ]);
        check(&bad).unwrap_err();
    }

    #[test]
    fn the_shrunk_sub_history_is_the_anomaly_not_the_whole_run() {
        // 300 clean sequential ops on the key, then one stale read.
        let mut ops = Vec::new();
        let mut t = 0;
        for i in 0..150 {
            ops.push(put(i % 4, &format!("v{i}"), t, t + 1));
            ops.push(get((i + 1) % 4, Some(&format!("v{i}")), t + 2, t + 3));
            t += 4;
        }
        ops.push(get(5, Some("v100"), t, t + 1));
        let v = check(&h(ops)).unwrap_err();
        assert_eq!(v.key_ops, 301);
        // The stale read, the write it read and a later acknowledged write
        // (the one that overwrote it is enough).
        assert_eq!(v.ops.len(), 3, "{v}");
        assert_eq!(v.ops.last().unwrap().client, 5, "{v}");
    }

    /// An independent, exhaustive checker: try every order that respects
    /// real time, failed writes optional, failed gets ignored.
    fn brute_force(ops: &[Operation]) -> bool {
        fn go(ops: &[&Operation], done: &mut Vec<bool>, state: Option<Vec<u8>>) -> bool {
            let pending: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
            if pending.iter().all(|&i| ops[i].failed()) {
                return true;
            }
            for &i in &pending {
                // i may go next only if no pending acknowledged op completed
                // before i was invoked.
                if pending
                    .iter()
                    .any(|&j| !ops[j].failed() && ops[j].complete < ops[i].invoke)
                {
                    continue;
                }
                let next = match (&ops[i].call, &ops[i].ret) {
                    (Call::Get, Ret::Value(v)) if *v == state => state.clone(),
                    (Call::Get, _) => continue,
                    (Call::Put(v), _) => Some(v.clone()),
                    (Call::Delete, _) => None,
                };
                done[i] = true;
                if go(ops, done, next) {
                    return true;
                }
                done[i] = false;
            }
            false
        }
        let ops: Vec<&Operation> = ops.iter().filter(|o| o.is_write() || !o.failed()).collect();
        go(&ops, &mut vec![false; ops.len()], None)
    }

    #[test]
    fn agrees_with_an_exhaustive_search_on_small_random_histories() {
        let mut rng = Rng::new(42);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + rng.below(7) as usize;
            let mut ops = Vec::new();
            let mut written = vec!["a".to_string()];
            for i in 0..n {
                let invoke = rng.below(20);
                let complete = invoke + rng.below(8);
                let c = i % 3;
                let failed = rng.below(5) == 0;
                let o = match rng.below(3) {
                    0 => {
                        let v = format!("v{i}");
                        written.push(v.clone());
                        if failed {
                            put_failed(c, &v, invoke, complete)
                        } else {
                            put(c, &v, invoke, complete)
                        }
                    }
                    1 if failed => op(c, Call::Delete, Ret::Failed("x".into()), invoke, complete),
                    1 => del(c, invoke, complete),
                    _ if failed => get_failed(c, invoke, complete),
                    _ => {
                        let pick = rng.below(written.len() as u64 + 1) as usize;
                        get(c, written.get(pick).map(|s| s.as_str()), invoke, complete)
                    }
                };
                ops.push(o);
            }
            let expected = brute_force(&ops);
            let got = check(&h(ops.clone()));
            assert_eq!(got.is_ok(), expected, "{ops:#?}");
            if let Err(v) = got {
                // The shrunk sub-history is itself a violation.
                assert!(!brute_force(&v.ops), "{v}");
                no += 1;
            } else {
                yes += 1;
            }
        }
        assert!(yes > 300 && no > 300, "both outcomes exercised: {yes} {no}");
    }

    #[test]
    fn many_pending_failed_deletes_do_not_blow_up_the_search() {
        // 40 failed deletes (each may take effect any time after it was
        // invoked), interleaved with puts and reads of absent and of values:
        // linearizable, and found so without exploring 2^40 subsets.
        let mut ops = Vec::new();
        for i in 0..40u64 {
            let t = i * 10;
            ops.push(op(0, Call::Delete, Ret::Failed("x".into()), t, t + 1));
            ops.push(put(1, &format!("v{i}"), t + 2, t + 3));
            ops.push(get(2, Some(&format!("v{i}")), t + 4, t + 5));
            ops.push(get(2, None, t + 6, t + 7));
        }
        check(&h(ops.clone())).unwrap();
        // And the same with one impossible read at the end.
        ops.push(get(3, Some("v3"), 1000, 1001));
        let v = check(&h(ops)).unwrap_err();
        assert!(!v.gave_up, "{v}");
    }

    #[test]
    fn many_concurrent_clients_check_fast() {
        // 8 clients, 2000 ops on one key, overlapping, all consistent with a
        // register (each get reads the latest completed write): linearizable.
        let mut rng = Rng::new(7);
        let mut ops = Vec::new();
        let mut last: Option<String> = None;
        let mut t = 0u64;
        for i in 0..2000 {
            let c = (i % 8) as usize;
            let dur = 1 + rng.below(5);
            if rng.below(2) == 0 {
                let v = format!("c{c}-{i}");
                ops.push(put(c, &v, t, t + dur));
                last = Some(v);
            } else {
                ops.push(get(c, last.as_deref(), t, t + dur));
            }
            // Overlap only when the previous op was a get (reads of a
            // settled value stay valid), so the history stays linearizable.
            t += 1 + rng.below(2);
            if matches!(ops.last().unwrap().call, Call::Put(_)) {
                t += dur;
            }
        }
        let started = Instant::now();
        check(&h(ops)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
