//! The in-process link: a bounded queue of element batches between one producer and one consumer.
//!
//! Producers and consumers are either actors (woken through a [`Waker`]) or plain threads
//! (blocked on a condition variable); the queue serves both. Capacity is counted in elements:
//! with the lossless `Block` policy a push that does not fit hands the rest back to the
//! producer, which waits until the consumer takes data; lossy policies drop and count. A
//! lossless link of [`Value`]s is also bounded in bytes ([`LinkConfig::max_bytes`]): a stream
//! of 1 MB camera frames does not queue a thousand of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::cycle::CycleCounter;
use crate::Value;

/// A wake-up callback: schedules the actor (or thread) on the other side of a link.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A consumer that can take batches straight from the producer, in the producer's thread,
/// instead of having them queued (the ring writer of a link to another process).
///
/// [`Channel::push`] offers each batch to it first; a batch it hands back is queued as usual.
/// It must keep the order of the stream: take a batch only while nothing is queued in `chan`
/// (nor held back by itself), and count the elements it takes with [`Channel::count_pushed`].
pub trait DirectDrain<T>: Send + Sync {
    /// Takes `batch` (returns `None`) or hands it back.
    fn offer(&self, chan: &Channel<T>, batch: Vec<T>) -> Option<Vec<T>>;
}

/// What a full link does with new elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Lossless: the producer waits until there is room (the default).
    #[default]
    Block,
    /// Drop the oldest queued elements to make room, counting them.
    DropOldest,
    /// Drop the new elements that do not fit, counting them.
    DropNewest,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct End {
    /// True when the end was declared because the feedback cycle this link is on went quiet.
    pub cycle: bool,
}

/// What a consumer finds when it takes from a link.
#[derive(Debug)]
pub enum Recv<T> {
    /// A batch of elements, in order.
    Batch(Vec<T>),
    /// The stream has ended and every element has been taken.
    End(End),
    /// Nothing queued right now.
    Empty,
}

/// Default bound of a lossless link of [`Value`]s in bytes (see [`LinkConfig::max_bytes`]).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// Settings of one link.
#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    /// Elements queued before the producer waits (or drops); `usize::MAX` for unbounded.
    pub capacity: usize,
    /// What happens when the link is full.
    pub overflow: Overflow,
    /// Under `Block`, bytes of [`Value`] elements (strings, arrays, maps: what they hold
    /// besides their fixed size) queued before the producer waits, whatever `capacity` says;
    /// one element always fits an empty link. `usize::MAX` for no bound. Links of other
    /// element types, and lossy links, are bounded by `capacity` alone.
    pub max_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            capacity: 1024,
            overflow: Overflow::Block,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl LinkConfig {
    /// A lossless link of `capacity` elements with the default byte bound.
    pub fn with_capacity(capacity: usize) -> Self {
        LinkConfig {
            capacity,
            ..LinkConfig::default()
        }
    }
}

struct State<T> {
    batches: VecDeque<Vec<T>>,
    /// The bytes counted for each queued batch (0 when the link counts none), in step with
    /// `batches`.
    sizes: VecDeque<usize>,
    len: usize,
    /// The sum of `sizes`.
    bytes: usize,
    end: Option<End>,
    consumer_waker: Option<Waker>,
    producer_waker: Option<Waker>,
    consumer_notified: bool,
    producer_waiting: bool,
    consumer_gone: bool,
    /// Threads blocked in `push_blocking` / `take_blocking` (condition variables are only
    /// signalled when someone waits: a signal is a system call).
    space_waiters: usize,
    data_waiters: usize,
}

/// A bounded, lossless-by-default queue of batches: one `connect` between two operators.
pub struct Channel<T> {
    state: Mutex<State<T>>,
    space: Condvar,
    data: Condvar,
    config: LinkConfig,
    drops: AtomicU64,
    /// The feedback cycle's counter, and whether a push here adds to it.
    cycle: OnceLock<(Arc<CycleCounter>, bool)>,
    /// Takes pushed batches directly when it can (see [`DirectDrain`]).
    direct: OnceLock<Arc<dyn DirectDrain<T>>>,
    /// The byte bound, when this link counts bytes (lossless, of `Value`s, bounded).
    max_bytes: Option<usize>,
}

impl<T> State<T> {
    /// True when a producer has to wait: `capacity` elements, or the byte bound, reached.
    fn full(&self, capacity: usize, max_bytes: Option<usize>) -> bool {
        self.len >= capacity || max_bytes.is_some_and(|m| self.len > 0 && self.bytes >= m)
    }
}

/// Whether `more` bytes fit next to `queued` elements holding `bytes` bytes under the bound
/// `max`: one element always fits an empty link.
fn fits(queued: usize, bytes: usize, more: usize, max: usize) -> bool {
    queued == 0 || bytes + more <= max
}

/// Of the `batch` pushed into a link holding `queued` elements and `bytes` bytes (bound
/// `max`): how many elements fit, and their bytes. At least one when the link is empty.
fn fitting(batch: &[Value], queued: usize, bytes: usize, max: usize) -> (usize, usize) {
    let mut total = 0usize;
    for (i, v) in batch.iter().enumerate() {
        let b = v.heap_bytes();
        if !fits(queued + i, bytes + total, b, max) {
            return (i, total);
        }
        total += b;
    }
    (batch.len(), total)
}

impl<T: 'static> Channel<T> {
    /// A new, empty link.
    pub fn new(config: LinkConfig) -> Arc<Self> {
        Self::with_cycle(config, None)
    }

    /// A new link that counts its elements in flight for a feedback cycle's quiescence.
    pub fn with_cycle(config: LinkConfig, cycle: Option<Arc<CycleCounter>>) -> Arc<Self> {
        let c = Self::make(config);
        if let Some(cycle) = cycle {
            c.set_cycle(cycle, true);
        }
        c
    }

    /// Puts the link on a feedback cycle; `count_push` is false where the elements pushed were
    /// already counted upstream (a link fed from another process).
    pub fn set_cycle(&self, cycle: Arc<CycleCounter>, count_push: bool) {
        let _ = self.cycle.set((cycle, count_push));
    }

    fn make(config: LinkConfig) -> Arc<Self> {
        Arc::new(Channel {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                sizes: VecDeque::new(),
                len: 0,
                bytes: 0,
                end: None,
                consumer_waker: None,
                producer_waker: None,
                consumer_notified: false,
                producer_waiting: false,
                consumer_gone: false,
                space_waiters: 0,
                data_waiters: 0,
            }),
            space: Condvar::new(),
            data: Condvar::new(),
            config,
            drops: AtomicU64::new(0),
            cycle: OnceLock::new(),
            direct: OnceLock::new(),
            max_bytes: (config.overflow == Overflow::Block
                && config.max_bytes != usize::MAX
                && std::any::TypeId::of::<T>() == std::any::TypeId::of::<Value>())
            .then_some(config.max_bytes),
        })
    }
}

impl<T> Channel<T> {
    /// `batch` as the values whose bytes this link counts; `None` when it counts none.
    fn counted<'a>(&self, batch: &'a [T]) -> Option<&'a [Value]> {
        self.max_bytes?;
        // SAFETY: `max_bytes` is only set when T is Value (see `make`).
        Some(unsafe { std::slice::from_raw_parts(batch.as_ptr() as *const Value, batch.len()) })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock only means another thread panicked while holding it; the queue
        // itself is always left consistent, so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link's settings.
    pub fn config(&self) -> LinkConfig {
        self.config
    }

    /// The cycle counter, when this link is inside a feedback cycle.
    pub fn cycle(&self) -> Option<&Arc<CycleCounter>> {
        self.cycle.get().map(|c| &c.0)
    }

    /// Elements dropped so far by a lossy overflow policy.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// Elements queued now.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers the callback that wakes the consumer when data or the end arrives.
    pub fn set_consumer_waker(&self, w: Waker) {
        self.lock().consumer_waker = Some(w);
    }

    /// Registers the callback that wakes the producer when room frees up.
    pub fn set_producer_waker(&self, w: Waker) {
        self.lock().producer_waker = Some(w);
    }

    /// Lets `d` take pushed batches directly (once; later calls are ignored).
    pub fn set_direct_drain(&self, d: Arc<dyn DirectDrain<T>>) {
        let _ = self.direct.set(d);
    }

    /// True when no batch is queued (the end may be).
    pub fn queue_is_empty(&self) -> bool {
        self.lock().batches.is_empty()
    }

    /// True once the consumer declared it reads no more ([`Channel::disconnect_consumer`]).
    pub fn consumer_gone(&self) -> bool {
        self.lock().consumer_gone
    }

    /// Counts `n` elements taken by a [`DirectDrain`] as pushed (for a feedback cycle).
    pub fn count_pushed(&self, n: usize) {
        if let Some((c, true)) = self.cycle.get() {
            c.add(n as i64);
        }
    }

    /// Takes back a [`Channel::count_pushed`] of elements that were handed back instead.
    pub fn count_unpushed(&self, n: usize) {
        if let Some((c, true)) = self.cycle.get() {
            c.add(-(n as i64));
        }
    }

    /// Pushes a batch; returns the part that did not fit (only under `Block`).
    ///
    /// The caller keeps the returned rest and pushes it again once woken.
    pub fn push(&self, mut batch: Vec<T>) -> Option<Vec<T>> {
        if batch.is_empty() {
            return None;
        }
        if let Some(d) = self.direct.get() {
            batch = d.offer(self, batch)?;
        }
        // The values whose bytes to count, found before taking the lock: a batch of numbers
        // (the common case) holds none, found in one quick scan.
        let counted = self
            .counted(&batch)
            .filter(|v| !crate::value::all_scalars(v));
        let mut st = self.lock();
        if st.consumer_gone {
            // Nobody will read: the consumer ended (e.g. a cycle that already closed).
            self.drops.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return None;
        }
        let cap = self.config.capacity;
        let mut rest = None;
        let mut size = 0;
        match self.config.overflow {
            Overflow::Block => {
                if st.full(cap, self.max_bytes) {
                    st.producer_waiting = true;
                    return Some(batch);
                }
                let mut room = cap - st.len;
                if let (Some(max), Some(values)) = (self.max_bytes, counted) {
                    let (n, b) = fitting(&values[..room.min(values.len())], st.len, st.bytes, max);
                    if n == 0 {
                        // Not even the first element fits next to what is queued.
                        st.producer_waiting = true;
                        return Some(batch);
                    }
                    room = n;
                    size = b;
                }
                if batch.len() > room {
                    rest = Some(batch.split_off(room));
                    st.producer_waiting = true;
                }
            }
            Overflow::DropNewest => {
                let room = cap.saturating_sub(st.len);
                if batch.len() > room {
                    let dropped = batch.len() - room;
                    batch.truncate(room);
                    self.drops.fetch_add(dropped as u64, Ordering::Relaxed);
                    if batch.is_empty() {
                        return None;
                    }
                }
            }
            Overflow::DropOldest => {
                if batch.len() > cap {
                    let dropped = batch.len() - cap;
                    batch.drain(..dropped);
                    self.drops.fetch_add(dropped as u64, Ordering::Relaxed);
                }
                let mut excess = (st.len + batch.len()).saturating_sub(cap);
                while excess > 0 {
                    let Some(front) = st.batches.front_mut() else {
                        break;
                    };
                    if front.len() <= excess {
                        let n = front.len();
                        st.batches.pop_front();
                        st.sizes.pop_front();
                        st.len -= n;
                        excess -= n;
                        self.drops.fetch_add(n as u64, Ordering::Relaxed);
                    } else {
                        front.drain(..excess);
                        st.len -= excess;
                        self.drops.fetch_add(excess as u64, Ordering::Relaxed);
                        excess = 0;
                    }
                }
            }
        }
        if let Some((c, true)) = self.cycle.get() {
            c.add(batch.len() as i64);
        }
        st.len += batch.len();
        st.bytes += size;
        st.batches.push_back(batch);
        st.sizes.push_back(size);
        let waker = if st.consumer_notified {
            None
        } else {
            st.consumer_notified = true;
            st.consumer_waker.clone()
        };
        let signal = st.data_waiters > 0;
        drop(st);
        if signal {
            self.data.notify_one();
        }
        if let Some(w) = waker {
            w();
        }
        rest
    }

    /// Pushes a whole batch, blocking the calling thread while the link is full.
    ///
    /// Returns false if `deadline` passed first (the rest is handed back in `batch`).
    pub fn push_blocking(&self, batch: &mut Vec<T>, deadline: Option<Instant>) -> bool {
        let mut pending = std::mem::take(batch);
        loop {
            match self.push(pending) {
                None => return true,
                Some(rest) => pending = rest,
            }
            // The bytes of the first element left, which has to fit before anything moves.
            let first = self
                .counted(&pending)
                .and_then(|v| v.first())
                .map_or(0, Value::heap_bytes);
            let mut st = self.lock();
            let room = st.len < self.config.capacity
                && self
                    .max_bytes
                    .map_or(true, |m| fits(st.len, st.bytes, first, m));
            if room || st.consumer_gone {
                continue;
            }
            st.space_waiters += 1;
            let mut st = match deadline {
                None => self.space.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.space_waiters -= 1;
                        *batch = pending;
                        return false;
                    }
                    self.space
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.space_waiters -= 1;
        }
    }

    /// Marks the end of the stream; the consumer sees it after every queued batch.
    pub fn close(&self, end: End) {
        let mut st = self.lock();
        if st.end.is_some() {
            return;
        }
        st.end = Some(end);
        st.consumer_notified = true;
        let waker = st.consumer_waker.clone();
        drop(st);
        self.data.notify_all();
        if let Some(w) = waker {
            w();
        }
    }

    /// True once the producer closed the link.
    pub fn is_closed(&self) -> bool {
        self.lock().end.is_some()
    }

    /// Takes the next batch, or reports the end or that nothing is queued.
    ///
    /// `Empty` and `End` re-arm the consumer's wake-up, so the next push wakes it again.
    pub fn take(&self) -> Recv<T> {
        self.take_up_to(usize::MAX)
    }

    /// Like [`Channel::take`], but takes at most `max` elements (at least one) of the next
    /// batch; the rest of it stays first in the link.
    pub fn take_up_to(&self, max: usize) -> Recv<T> {
        let mut st = self.lock();
        let max = max.max(1);
        if st.batches.front().is_some_and(|b| b.len() > max) {
            let front = st.batches.front_mut().expect("checked");
            let rest = front.split_off(max);
            let b = std::mem::replace(front, rest);
            let bytes = match (st.sizes.front().copied(), self.counted(&b)) {
                (Some(size), Some(values)) if size > 0 => values
                    .iter()
                    .map(Value::heap_bytes)
                    .sum::<usize>()
                    .min(size),
                _ => 0,
            };
            if let Some(size) = st.sizes.front_mut() {
                *size -= bytes;
            }
            st.bytes -= bytes;
            st.len -= b.len();
            self.taken(st);
            return Recv::Batch(b);
        }
        match st.batches.pop_front() {
            Some(b) => {
                st.len -= b.len();
                st.bytes -= st.sizes.pop_front().unwrap_or(0);
                self.taken(st);
                Recv::Batch(b)
            }
            None => {
                st.consumer_notified = false;
                match st.end {
                    Some(e) => Recv::End(e),
                    None => Recv::Empty,
                }
            }
        }
    }

    /// After a take: wakes a producer waiting for the room it made.
    fn taken(&self, mut st: MutexGuard<'_, State<T>>) {
        let waker = if st.producer_waiting && !st.full(self.config.capacity, self.max_bytes) {
            st.producer_waiting = false;
            st.producer_waker.clone()
        } else {
            None
        };
        let signal = st.space_waiters > 0;
        drop(st);
        if signal {
            self.space.notify_all();
        }
        if let Some(w) = waker {
            w();
        }
    }

    /// Waits until a batch or the end of the stream is there to take, without taking it.
    pub fn wait_data(&self) {
        let mut st = self.lock();
        while st.batches.is_empty() && st.end.is_none() {
            st.data_waiters += 1;
            st = self.data.wait(st).unwrap_or_else(|e| e.into_inner());
            st.data_waiters -= 1;
        }
    }

    /// Takes the next batch, blocking the calling thread until one (or the end) arrives.
    ///
    /// Returns `Recv::Empty` only if `deadline` passed first.
    pub fn take_blocking(&self, deadline: Option<Instant>) -> Recv<T> {
        loop {
            match self.take() {
                Recv::Empty => {}
                r => return r,
            }
            let mut st = self.lock();
            if !st.batches.is_empty() || st.end.is_some() {
                continue;
            }
            st.data_waiters += 1;
            let mut st = match deadline {
                None => self.data.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.data_waiters -= 1;
                        return Recv::Empty;
                    }
                    self.data
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.data_waiters -= 1;
        }
    }

    /// Declares that the consumer will read no more: queued data is dropped (and counted),
    /// later pushes are dropped, and a waiting producer is released.
    pub fn disconnect_consumer(&self) -> usize {
        let mut st = self.lock();
        st.consumer_gone = true;
        let n = st.len;
        st.batches.clear();
        st.sizes.clear();
        st.len = 0;
        st.bytes = 0;
        st.producer_waiting = false;
        let waker = st.producer_waker.clone();
        drop(st);
        self.drops.fetch_add(n as u64, Ordering::Relaxed);
        self.space.notify_all();
        if let Some(w) = waker {
            w();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cfg(capacity: usize, overflow: Overflow) -> LinkConfig {
        LinkConfig {
            capacity,
            overflow,
            ..LinkConfig::default()
        }
    }

    #[test]
    fn block_hands_back_what_does_not_fit_and_wakes_the_producer() {
        let ch = Channel::new(cfg(4, Overflow::Block));
        let woke = Arc::new(AtomicUsize::new(0));
        let w = woke.clone();
        ch.set_producer_waker(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        let rest = ch.push(vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(rest, Some(vec![5, 6]));
        assert_eq!(ch.len(), 4);
        match ch.take() {
            Recv::Batch(b) => assert_eq!(b, vec![1, 2, 3, 4]),
            other => panic!("expected a batch, got {other:?}"),
        }
        assert_eq!(woke.load(Ordering::SeqCst), 1);
        assert_eq!(ch.push(vec![5, 6]), None);
        assert_eq!(ch.drops(), 0);
    }

    #[test]
    fn lossy_policies_count_their_drops() {
        let ch = Channel::new(cfg(3, Overflow::DropNewest));
        assert_eq!(ch.push(vec![1, 2]), None);
        assert_eq!(ch.push(vec![3, 4, 5]), None);
        assert_eq!(ch.drops(), 2);
        let ch = Channel::new(cfg(3, Overflow::DropOldest));
        ch.push(vec![1, 2]);
        ch.push(vec![3, 4, 5]);
        assert_eq!(ch.drops(), 2);
        let mut all = vec![];
        while let Recv::Batch(b) = ch.take() {
            all.extend(b);
        }
        assert_eq!(all, vec![3, 4, 5]);
    }

    #[test]
    fn end_comes_after_every_queued_batch() {
        let ch = Channel::new(LinkConfig::default());
        ch.push(vec![1]);
        ch.close(End::default());
        assert!(matches!(ch.take(), Recv::Batch(_)));
        assert!(matches!(ch.take(), Recv::End(_)));
    }

    #[test]
    fn consumer_is_woken_once_until_it_drains() {
        let ch = Channel::new(LinkConfig::default());
        let woke = Arc::new(AtomicUsize::new(0));
        let w = woke.clone();
        ch.set_consumer_waker(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        ch.push(vec![1]);
        ch.push(vec![2]);
        assert_eq!(woke.load(Ordering::SeqCst), 1);
        while let Recv::Batch(_) = ch.take() {}
        ch.push(vec![3]);
        assert_eq!(woke.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn blocking_ends_move_everything_across_threads_in_order() {
        let ch = Channel::new(cfg(8, Overflow::Block));
        let prod = ch.clone();
        let t = std::thread::spawn(move || {
            for i in 0..1000u64 {
                let mut b = vec![i; 3];
                assert!(prod.push_blocking(&mut b, None));
            }
            prod.close(End::default());
        });
        let mut got = vec![];
        loop {
            match ch.take_blocking(None) {
                Recv::Batch(b) => got.extend(b),
                Recv::End(_) => break,
                Recv::Empty => unreachable!("no deadline was given"),
            }
        }
        t.join().unwrap();
        let want: Vec<u64> = (0..1000).flat_map(|i| [i, i, i]).collect();
        assert_eq!(got, want);
    }

    fn big(n: usize) -> Vec<Value> {
        // n distinct strings of 1 MiB each
        (0..n)
            .map(|i| {
                let mut s = i.to_string();
                s.push_str(&"x".repeat((1 << 20) - s.len()));
                Value::Str(s)
            })
            .collect()
    }

    #[test]
    fn a_lossless_link_of_values_is_bounded_in_bytes_too() {
        let c = Channel::<Value>::new(LinkConfig {
            max_bytes: 4 << 20,
            ..LinkConfig::default()
        });
        let woken = Arc::new(AtomicUsize::new(0));
        let w2 = woken.clone();
        c.set_producer_waker(Arc::new(move || {
            w2.fetch_add(1, Ordering::SeqCst);
        }));
        // Four 1 MiB strings fit (with any number of scalars), the fifth waits.
        let rest = c.push(big(10)).expect("over the byte bound");
        assert_eq!((c.len(), rest.len()), (4, 6));
        assert_eq!(c.push(rest.clone()).map(|r| r.len()), Some(6), "full");
        assert_eq!(
            c.push(vec![Value::Int(1)]).map(|r| r.len()),
            Some(1),
            "full"
        );
        let Recv::Batch(b) = c.take() else {
            panic!("a batch")
        };
        assert_eq!(b, big(10)[..4].to_vec(), "in order");
        assert_eq!(woken.load(Ordering::SeqCst), 1, "room wakes the producer");
        assert!(c.push(rest).unwrap().len() == 2);
        // Numbers count no bytes: an empty link takes them up to its capacity.
        c.take();
        assert!(c.push((0..1000).map(Value::Int).collect()).is_none());
        assert_eq!(c.len(), 1000);
    }

    #[test]
    fn part_of_a_batch_can_be_taken_and_the_rest_stays_first_with_its_bytes() {
        let c = Channel::<Value>::new(LinkConfig {
            max_bytes: 4 << 20,
            ..LinkConfig::default()
        });
        assert!(c.push(big(3)).is_none());
        assert!(c.push(vec![Value::Int(7)]).is_none());
        // Full in bytes (3 MiB of 4 queued, and a 2 MiB string does not fit).
        let two = vec![Value::Str("y".repeat(2 << 20))];
        assert_eq!(c.push(two.clone()), Some(two.clone()));
        match c.take_up_to(2) {
            Recv::Batch(b) => assert_eq!(b, big(3)[..2].to_vec()),
            r => panic!("{r:?}"),
        }
        assert_eq!(c.len(), 2);
        // The two taken MiB are counted out: the 2 MiB string fits now.
        assert!(c.push(two.clone()).is_none());
        match c.take_up_to(0) {
            Recv::Batch(b) => assert_eq!(b, big(3)[2..].to_vec(), "at least one, the rest first"),
            r => panic!("{r:?}"),
        }
        for want in [vec![Value::Int(7)], two] {
            match c.take_up_to(usize::MAX) {
                Recv::Batch(b) => assert_eq!(b, want),
                r => panic!("{r:?}"),
            }
        }
        assert!(matches!(c.take_up_to(5), Recv::Empty));
    }

    #[test]
    fn an_element_that_does_not_fit_yet_waits_and_nothing_empty_is_queued() {
        let c = Channel::<Value>::new(LinkConfig {
            max_bytes: 3 << 20,
            ..LinkConfig::default()
        });
        assert!(c.push(big(2)).is_none());
        // 2 MiB queued, under the bound of 3: a 2 MiB string does not fit yet.
        let two = vec![Value::Str("y".repeat(2 << 20))];
        assert_eq!(c.push(two.clone()), Some(two.clone()));
        assert_eq!(c.len(), 2);
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut got = vec![];
            while got.len() < 3 {
                match c2.take_blocking(None) {
                    Recv::Batch(b) => {
                        assert!(!b.is_empty(), "an empty batch was queued");
                        got.extend(b)
                    }
                    r => panic!("{r:?}"),
                }
            }
            got
        });
        let mut b = two.clone();
        assert!(
            c.push_blocking(&mut b, None),
            "waits for room, then goes in"
        );
        let mut want = big(2);
        want.extend(two);
        assert_eq!(t.join().unwrap(), want);
    }

    #[test]
    fn one_element_larger_than_the_byte_bound_passes_an_empty_link() {
        let c = Channel::<Value>::new(LinkConfig {
            max_bytes: 1000,
            ..LinkConfig::default()
        });
        let rest = c.push(big(2)).expect("the second waits");
        assert_eq!((c.len(), rest.len()), (1, 1));
        c.take();
        assert!(c.push(rest).is_none());
    }

    #[test]
    fn lossy_links_and_links_of_other_types_are_bounded_by_capacity_alone() {
        let tight = LinkConfig {
            capacity: 100,
            max_bytes: 10,
            ..LinkConfig::default()
        };
        let lossy = Channel::<Value>::new(LinkConfig {
            overflow: Overflow::DropNewest,
            ..tight
        });
        assert!(lossy.push(big(3)).is_none());
        assert_eq!((lossy.len(), lossy.drops()), (3, 0));
        let strings = Channel::<String>::new(tight);
        assert!(strings.push(vec!["x".repeat(1000); 3]).is_none());
        assert_eq!(strings.len(), 3);
    }

    #[test]
    fn heap_bytes_count_strings_arrays_and_maps() {
        let v = size_of::<Value>();
        assert_eq!(Value::heap_bytes(&Value::Float(1.0)), 0);
        assert_eq!(Value::heap_bytes(&Value::Str("abc".into())), 3);
        let a = Value::Array(vec![Value::Int(1), Value::Str("ab".into())]);
        assert_eq!(Value::heap_bytes(&a), 2 * v + 2);
        let m = Value::Map([("k".to_string(), a.clone())].into());
        assert_eq!(Value::heap_bytes(&m), 2 * v + 1 + 2 * v + 2);
    }
}
