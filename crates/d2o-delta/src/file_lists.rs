//! The active files of table versions, read once for many callers.
//!
//! [`FileLists::visit`] serves the files of a version from the first of these that has them:
//! 1. the cache: complete lists, least recently used first out, within a byte budget;
//! 2. a scan of the same version that another caller is running (a *flight*): the caller visits
//!    the segments scanned so far, then each new one as it arrives. A burst of requests for a
//!    new version replays its log once;
//! 3. a scan of its own, which it leads as a flight later callers can join.
//!
//! # Memory
//! A list is a sequence of segments, one per batch of the kernel's scan. While a flight's
//! segments fit the budget it keeps them all, to cache the complete list at the end. Past the
//! budget the version cannot be cached, and the flight changes mode:
//! - it closes: later callers start a flight of their own;
//! - it drops every segment that all its callers have visited;
//! - the scanning caller waits whenever the slowest caller lags more than the window behind.
//!
//! So a version of any size is served within the budget plus one window per flight, and a slow
//! reader slows only the callers of its own flight. A flight whose callers have all stopped
//! visiting stops scanning as soon as it knows the list cannot be cached.
//!
//! A flight expected not to fit keeps only a window from the start, so that it never holds the
//! budget for a list it will drop. It is expected not to fit when the last complete scan of its
//! table measured more than the budget or, for a table not scanned yet, when the version's
//! checkpoint alone is larger than the budget (a list holds a file's path and statistics, as the
//! checkpoint does; a checkpoint full of removed files can overstate it, which the table's first
//! scan corrects).

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use url::Url;

use crate::cache::{ByteLru, count_lookup};
use crate::{ActiveFiles, DeltaError};

/// A table version: its root and version number.
pub(crate) type VersionKey = (Url, u64);

/// Bytes of segments an uncacheable flight keeps for its slowest caller.
const WINDOW_BYTES: usize = 16 << 20;

/// Visits a segment of a file list; breaks to stop.
pub type SegmentVisitor<'a> = dyn FnMut(&Arc<ActiveFiles>) -> ControlFlow<()> + 'a;

/// Runs a scan, handing its segments to the given function until it breaks.
pub(crate) type Scan<'a> = dyn FnOnce(&mut dyn FnMut(ActiveFiles) -> ControlFlow<()>) -> Result<(), DeltaError> + 'a;

/// The per-version file lists of [`crate::DeltaTables`]: a cache and the flights in progress.
pub(crate) struct FileLists {
    budget: usize,
    window: usize,
    versions_per_table: usize,
    cache: Mutex<ByteLru<VersionKey, Arc<FileList>>>,
    /// The bytes of the last complete list of each table: what the next version of the table is
    /// expected to need.
    measured: Mutex<HashMap<Url, usize>>,
    /// Lock order: `flights`, then `cache`, then a flight's state, then `measured`.
    flights: Mutex<HashMap<VersionKey, Arc<Flight>>>,
}

/// The complete active files of one version: the segments of its scan, in order.
#[derive(Debug)]
struct FileList {
    segments: Vec<Arc<ActiveFiles>>,
}

impl FileList {
    fn visit(&self, visit: &mut SegmentVisitor<'_>) {
        for segment in &self.segments {
            if visit(segment).is_break() {
                return;
            }
        }
    }
}

/// One scan in progress and the callers reading it.
#[derive(Default)]
struct Flight {
    state: Mutex<FlightState>,
    /// Signalled when a segment arrives, the scan ends, or a caller moves on or leaves.
    changed: Condvar,
}

#[derive(Default)]
struct FlightState {
    /// The segments not dropped yet; `segments[0]` is segment number `first`.
    segments: VecDeque<Arc<ActiveFiles>>,
    first: usize,
    /// Bytes in `segments`.
    held: usize,
    /// Bytes of every segment scanned so far.
    scanned: usize,
    /// For each caller, the number of the next segment it will visit; `None` once it stopped.
    cursors: Vec<Option<usize>>,
    /// Whether later callers may join: until a segment has been dropped.
    closed: bool,
    /// Set when the scan has ended: after its last segment, or with its error.
    outcome: Option<Result<(), DeltaError>>,
}

impl FlightState {
    fn end(&self) -> usize {
        self.first + self.segments.len()
    }

    fn readers(&self) -> usize {
        self.cursors.iter().flatten().count()
    }

    /// Whether some caller has segments left to visit.
    fn lagging(&self) -> bool {
        let end = self.end();
        self.cursors.iter().flatten().any(|c| *c < end)
    }

    /// Drops the segments every caller has visited.
    fn drop_visited(&mut self) {
        let keep_from = self.cursors.iter().flatten().copied().min().unwrap_or(usize::MAX);
        while self.first < keep_from
            && let Some(segment) = self.segments.pop_front()
        {
            self.held -= segment.heap_bytes();
            self.first += 1;
        }
    }
}

impl FileLists {
    /// Lists within `budget` bytes in all, at most `versions_per_table` versions of each table.
    pub(crate) fn new(budget: usize, versions_per_table: usize) -> Self {
        FileLists {
            budget,
            window: WINDOW_BYTES,
            versions_per_table: versions_per_table.max(1),
            cache: Mutex::new(ByteLru::new(budget)),
            measured: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `visit` with every segment of the active files of the version `key`, in scan
    /// order, until it breaks; `scan` reads them when neither the cache nor a running flight has
    /// them. `checkpoint_bytes` is the size of the version's checkpoint (0 without one), which
    /// judges whether a table not scanned before can fit. An error of the scan reaches every
    /// caller of its flight (after the segments scanned before it).
    pub(crate) fn visit(
        &self,
        key: VersionKey,
        checkpoint_bytes: usize,
        scan: Box<Scan<'_>>,
        visit: &mut SegmentVisitor<'_>,
    ) -> Result<(), DeltaError> {
        // Bound first: the lock must not be held while the caller visits.
        let cached = self.cache.lock().get(&key);
        if let Some(list) = cached {
            count_lookup("file_list", true);
            list.visit(visit);
            return Ok(());
        }
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(&key).cloned()
            && let Some(me) = flight.join()
        {
            drop(flights);
            count_lookup("file_list", true);
            metrics::counter!("d2o_file_list_scans_joined_total").increment(1);
            return flight.follow(me, visit);
        }
        // The flight that just ended may have cached its list after the first look.
        let cached = self.cache.lock().get(&key);
        if let Some(list) = cached {
            drop(flights);
            count_lookup("file_list", true);
            list.visit(visit);
            return Ok(());
        }
        let flight = Arc::new(Flight::default());
        flight.state.lock().cursors.push(Some(0));
        flights.insert(key.clone(), flight.clone());
        drop(flights);
        count_lookup("file_list", false);
        let mut lead = Lead { lists: self, key, flight, ended: false };
        lead.run(checkpoint_bytes, scan, visit)
    }

    /// Caches a complete list, keeping the newest versions of its table only.
    fn insert(&self, key: VersionKey, list: FileList) {
        let bytes = list.segments.iter().map(|s| s.heap_bytes()).sum();
        let root = key.0.clone();
        let mut cache = self.cache.lock();
        cache.insert(key, Arc::new(list), bytes);
        let mut versions: Vec<u64> = cache.keys().filter(|(l, _)| *l == root).map(|(_, v)| *v).collect();
        if versions.len() > self.versions_per_table {
            versions.sort_unstable_by(|a, b| b.cmp(a));
            let oldest_kept = versions[self.versions_per_table - 1];
            cache.retain(|(l, v)| *l != root || *v >= oldest_kept);
        }
        metrics::gauge!("d2o_file_list_cache_bytes").set(cache.used_bytes() as f64);
    }

    /// Forgets the cached lists of a table.
    pub(crate) fn forget(&self, location: &Url) {
        self.measured.lock().remove(location);
        let mut cache = self.cache.lock();
        cache.retain(|(l, _)| l != location);
        metrics::gauge!("d2o_file_list_cache_bytes").set(cache.used_bytes() as f64);
    }

    /// Versions cached, and the bytes they hold.
    #[cfg(test)]
    pub(crate) fn cached(&self) -> (usize, usize) {
        let cache = self.cache.lock();
        (cache.len(), cache.used_bytes())
    }
}

impl Flight {
    /// Adds a caller that starts at the first segment; `None` when the flight is closed.
    fn join(&self) -> Option<usize> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        state.cursors.push(Some(0));
        Some(state.cursors.len() - 1)
    }

    /// Visits the flight's segments as caller `me` until `visit` breaks or the scan has ended.
    fn follow(&self, me: usize, visit: &mut SegmentVisitor<'_>) -> Result<(), DeltaError> {
        let _leave = Leave { flight: self, me };
        let mut next = 0;
        loop {
            let segment = {
                let mut state = self.state.lock();
                loop {
                    if next < state.end() {
                        break state.segments[next - state.first].clone();
                    }
                    if let Some(outcome) = &state.outcome {
                        return outcome.as_ref().map(|_| ()).map_err(DeltaError::for_another_caller);
                    }
                    self.changed.wait(&mut state);
                }
            };
            if visit(&segment).is_break() {
                return Ok(());
            }
            next += 1;
            self.state.lock().cursors[me] = Some(next);
            self.changed.notify_all();
        }
    }
}

/// A caller's place in a flight, given up when it stops (also by a panic).
struct Leave<'a> {
    flight: &'a Flight,
    me: usize,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.flight.state.lock().cursors[self.me] = None;
        self.flight.changed.notify_all();
    }
}

/// The caller that scans for a flight (caller 0). Ends the flight when dropped, so that a panic
/// cannot leave the other callers waiting.
struct Lead<'a> {
    lists: &'a FileLists,
    key: VersionKey,
    flight: Arc<Flight>,
    ended: bool,
}

impl Lead<'_> {
    fn run(
        &mut self,
        checkpoint_bytes: usize,
        scan: Box<Scan<'_>>,
        visit: &mut SegmentVisitor<'_>,
    ) -> Result<(), DeltaError> {
        let flight = self.flight.clone();
        let window = self.lists.window;
        // Past this many bytes the list cannot be cached: the budget, or for a list expected not
        // to fit, the window (callers still join while the first window is kept).
        let expected = self.lists.measured.lock().get(&self.key.0).copied().unwrap_or(checkpoint_bytes);
        let keep_all_up_to =
            if expected > self.lists.budget { window.min(self.lists.budget) } else { self.lists.budget };
        let mut visiting = true;
        let mut stopped_early = false;
        let mut next = 0;
        let result = scan(&mut |segment| {
            let segment = Arc::new(segment);
            {
                let mut state = flight.state.lock();
                state.held += segment.heap_bytes();
                state.scanned += segment.heap_bytes();
                state.segments.push_back(segment.clone());
            }
            flight.changed.notify_all();
            if visiting {
                visiting = visit(&segment).is_continue();
            }
            next += 1;
            let mut state = flight.state.lock();
            state.cursors[0] = visiting.then_some(next);
            if state.scanned <= keep_all_up_to {
                return ControlFlow::Continue(());
            }
            // Too large to cache: keep only what the callers still need.
            state.closed = true;
            loop {
                state.drop_visited();
                if state.readers() == 0 {
                    stopped_early = true;
                    return ControlFlow::Break(());
                }
                if state.held <= window || !state.lagging() {
                    return ControlFlow::Continue(());
                }
                flight.changed.wait(&mut state);
            }
        });
        self.end(result.as_ref().map(|_| ()).map_err(DeltaError::for_another_caller), !stopped_early);
        result
    }

    /// Records the outcome for the other callers, caches the list when it is complete, and
    /// removes the flight (unless a newer flight of the same version replaced it).
    fn end(&mut self, outcome: Result<(), DeltaError>, scanned_all: bool) {
        self.ended = true;
        let mut flights = self.lists.flights.lock();
        let complete = {
            let mut state = self.flight.state.lock();
            // What the next version of the table is expected to need, when this whole version
            // was scanned.
            if outcome.is_ok() && scanned_all {
                self.lists.measured.lock().insert(self.key.0.clone(), state.scanned);
            }
            let complete = outcome.is_ok() && !state.closed;
            state.outcome = Some(outcome);
            complete.then(|| FileList { segments: state.segments.iter().cloned().collect() })
        };
        self.flight.changed.notify_all();
        if let Some(list) = complete {
            self.lists.insert(self.key.clone(), list);
        }
        if flights.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            flights.remove(&self.key);
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.end(Err(DeltaError::internal("the scan of this table version stopped")), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    fn key() -> VersionKey {
        (Url::parse("file:///t/").expect("url"), 7)
    }

    /// Segment `i` of a test table: 100 files named after it.
    fn segment(i: usize) -> ActiveFiles {
        let paths: Vec<String> = (0..100).map(|j| format!("part-{i:04}-{j:03}.parquet")).collect();
        ActiveFiles::with_paths(paths.iter().map(String::as_str))
    }

    fn all_paths(segments: usize) -> Vec<String> {
        (0..segments).flat_map(|i| (0..100).map(move |j| format!("part-{i:04}-{j:03}.parquet"))).collect()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn callers(lists: &FileLists) -> usize {
        lists.flights.lock().get(&key()).map_or(0, |f| f.state.lock().cursors.len())
    }

    /// Visits every file, returning the paths (and `Err` as the error's text).
    fn read_all(
        lists: &FileLists,
        scans: &AtomicUsize,
        scan: impl FnOnce(&mut dyn FnMut(ActiveFiles) -> ControlFlow<()>) -> Result<(), DeltaError>,
    ) -> Result<Vec<String>, String> {
        let mut paths = Vec::new();
        lists
            .visit(
                key(),
                0,
                Box::new(|sink: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| {
                    scans.fetch_add(1, Ordering::SeqCst);
                    scan(sink)
                }),
                &mut |segment| {
                    paths.extend(segment.iter().map(|e| e.path().to_owned()));
                    ControlFlow::Continue(())
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(paths)
    }

    #[test]
    fn eight_callers_at_once_share_one_scan_and_each_gets_every_file() {
        let lists = FileLists::new(64 << 20, 4);
        let scans = AtomicUsize::new(0);
        let results: Vec<_> = std::thread::scope(|s| {
            let lists = &lists;
            let scans = &scans;
            let leader = s.spawn(move || {
                read_all(lists, scans, |sink| {
                    let _ = sink(segment(0));
                    // Hold the scan until the seven others have joined.
                    wait_until("the other callers", || callers(lists) == 8);
                    for i in 1..50 {
                        let _ = sink(segment(i));
                    }
                    Ok(())
                })
            });
            wait_until("the first caller", || callers(lists) == 1);
            let followers: Vec<_> =
                (0..7).map(|_| s.spawn(move || read_all(lists, scans, |_| panic!("a follower scanned")))).collect();
            std::iter::once(leader).chain(followers).map(|h| h.join().expect("caller")).collect()
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        for r in results {
            assert_eq!(r.expect("files"), all_paths(50));
        }
        assert_eq!(lists.cached().0, 1, "the complete list is cached");
        assert!(lists.flights.lock().is_empty());
        // Later callers are served from the cache.
        assert_eq!(read_all(&lists, &scans, |_| panic!("scanned again")).expect("files"), all_paths(50));
    }

    /// Regression: a caller visiting a cached list (its response waiting on a slow client) must
    /// not hold the cache's lock, or every other request would wait for it.
    #[test]
    fn a_slow_reader_of_a_cached_list_does_not_block_others() {
        let lists = FileLists::new(64 << 20, 4);
        let scans = AtomicUsize::new(0);
        read_all(&lists, &scans, |sink| {
            let _ = sink(segment(0));
            Ok(())
        })
        .expect("first read");
        let other_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let (lists, scans, other_done) = (&lists, &scans, &other_done);
            s.spawn(move || {
                lists
                    .visit(
                        key(),
                        0,
                        Box::new(|_: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| panic!("scanned")),
                        &mut |_| {
                            wait_until("the other reader", || other_done.load(Ordering::SeqCst));
                            ControlFlow::Break(())
                        },
                    )
                    .expect("slow read");
            });
            let other = s.spawn(move || {
                let files = read_all(lists, scans, |_| panic!("scanned")).expect("other read");
                other_done.store(true, Ordering::SeqCst);
                files
            });
            assert_eq!(other.join().expect("other").len(), 100);
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_version_over_the_budget_is_streamed_in_a_window_and_not_cached() {
        let one = segment(0).heap_bytes();
        let lists = FileLists { window: 3 * one, ..FileLists::new(10 * one, 4) };
        let scans = AtomicUsize::new(0);
        let most_held = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let (lists, scans, most_held) = (&lists, &scans, &most_held);
            let leader = s.spawn(move || {
                read_all(lists, scans, |sink| {
                    for i in 0..100 {
                        if i == 1 {
                            wait_until("the slow caller", || callers(lists) == 2);
                        }
                        let _ = sink(segment(i));
                        let held = lists.flights.lock().get(&key()).map_or(0, |f| f.state.lock().held);
                        most_held.fetch_max(held, Ordering::SeqCst);
                    }
                    Ok(())
                })
            });
            wait_until("the first caller", || callers(lists) == 1);
            let slow = s.spawn(move || {
                let mut n = 0;
                let r = lists.visit(
                    key(),
                    0,
                    Box::new(|_: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| panic!("scanned")),
                    &mut |segment| {
                        n += segment.len();
                        std::thread::sleep(Duration::from_millis(1));
                        ControlFlow::Continue(())
                    },
                );
                r.map(|()| n)
            });
            assert_eq!(leader.join().expect("leader").expect("files"), all_paths(100));
            assert_eq!(slow.join().expect("slow").expect("files"), 100 * 100);
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        let most_held = most_held.load(Ordering::SeqCst);
        assert!(most_held <= 11 * one, "held {most_held} bytes, budget {} + segment", 10 * one);
        assert_eq!(lists.cached(), (0, 0), "too large to cache");
        assert_eq!(lists.measured.lock().get(&key().0), Some(&(100 * one)), "remembered as too large");
        // The next caller scans again, and the flight stops when nobody reads any more.
        let scanned = AtomicUsize::new(0);
        let r = lists.visit(
            key(),
            0,
            Box::new(|sink: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| {
                for i in 0..100 {
                    scanned.fetch_add(1, Ordering::SeqCst);
                    if sink(segment(i)).is_break() {
                        break;
                    }
                }
                Ok(())
            }),
            &mut |_| ControlFlow::Break(()),
        );
        r.expect("visit");
        assert_eq!(scanned.load(Ordering::SeqCst), 4, "stopped past the first window: the table is too large");
    }

    /// Scans `segments` segments of version `version` of the test table with one caller,
    /// returning the most bytes its flight held.
    fn scan_version(lists: &FileLists, version: u64, checkpoint_bytes: usize, segments: usize) -> usize {
        let key = (key().0, version);
        let most_held = AtomicUsize::new(0);
        let held = || lists.flights.lock().get(&key).map_or(0, |f| f.state.lock().held);
        lists
            .visit(
                key.clone(),
                checkpoint_bytes,
                Box::new(|sink: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| {
                    for i in 0..segments {
                        let _ = sink(segment(i));
                        most_held.fetch_max(held(), Ordering::SeqCst);
                    }
                    Ok(())
                }),
                &mut |_| ControlFlow::Continue(()),
            )
            .expect("visit");
        most_held.into_inner()
    }

    /// A table whose checkpoint is larger than the budget is streamed in a window from its first
    /// scan, rather than held up to the budget for a list that is then dropped; once a scan has
    /// measured that its list fits, its next version is cached whatever its checkpoint says.
    #[test]
    fn a_checkpoint_over_the_budget_is_streamed_from_the_start_until_a_scan_says_it_fits() {
        let one = segment(0).heap_bytes();
        let lists = FileLists { window: 3 * one, ..FileLists::new(10 * one, 4) };
        let most_held = scan_version(&lists, 1, 11 * one, 20);
        assert!(most_held <= 4 * one, "held {most_held} bytes, window {}", 3 * one);
        assert_eq!(lists.cached(), (0, 0));
        // Misjudged: a checkpoint larger than the budget, a list that fits.
        scan_version(&lists, 2, 11 * one, 5);
        assert_eq!(lists.cached(), (0, 0), "judged by the checkpoint");
        assert_eq!(lists.measured.lock().get(&key().0), Some(&(5 * one)));
        scan_version(&lists, 3, 11 * one, 5);
        assert_eq!(lists.cached(), (1, 5 * one), "judged by the scan before");
        // Without a measurement or a large checkpoint, a list is kept up to the budget.
        lists.forget(&key().0);
        let most_held = scan_version(&lists, 4, 0, 20);
        assert_eq!(most_held, 10 * one, "held up to the budget");
    }

    #[test]
    fn a_failed_scan_fails_every_caller_and_is_not_cached() {
        let lists = FileLists::new(64 << 20, 4);
        let scans = AtomicUsize::new(0);
        let (first, second) = std::thread::scope(|s| {
            let (lists, scans) = (&lists, &scans);
            let leader = s.spawn(move || {
                read_all(lists, scans, |sink| {
                    let _ = sink(segment(0));
                    wait_until("the other caller", || callers(lists) == 2);
                    Err(DeltaError::TableNotFound("part-0001.parquet".into()))
                })
            });
            wait_until("the first caller", || callers(lists) == 1);
            let follower = s.spawn(move || read_all(lists, scans, |_| panic!("scanned")));
            (leader.join().expect("leader"), follower.join().expect("follower"))
        });
        assert_eq!(first, Err("table files missing: part-0001.parquet".into()));
        assert_eq!(second, first);
        assert_eq!(lists.cached().0, 0);
        assert!(lists.flights.lock().is_empty());
    }

    #[test]
    fn a_panicking_scan_ends_its_flight() {
        let lists = FileLists::new(64 << 20, 4);
        let scans = AtomicUsize::new(0);
        let follower = std::thread::scope(|s| {
            let (lists, scans) = (&lists, &scans);
            let leader = s.spawn(move || {
                read_all(lists, scans, |sink| {
                    let _ = sink(segment(0));
                    wait_until("the other caller", || callers(lists) == 2);
                    panic!("a bug in the scan")
                })
            });
            wait_until("the first caller", || callers(lists) == 1);
            let follower = s.spawn(move || read_all(lists, scans, |_| panic!("scanned")));
            assert!(leader.join().is_err());
            follower.join().expect("follower")
        });
        assert_eq!(follower, Err("the scan of this table version stopped".into()));
        assert!(lists.flights.lock().is_empty());
        // The next caller scans afresh.
        assert_eq!(
            read_all(&lists, &scans, |sink| {
                let _ = sink(segment(0));
                Ok(())
            })
            .expect("files"),
            all_paths(1)
        );
    }
}
