//! File lines rendered on two threads and written in order.
//!
//! A listing decides which files it lists on the thread that visits the file list: filters,
//! limits and pages, which are cheap. Rendering the chosen files' lines (a signed URL each) is
//! most of a warm listing's CPU, so it happens in slices: alternately on that thread and on a
//! second one, started at the second slice (a small listing never starts it, and no more second
//! threads run at once than there are cores). Slices are written to the response in the order
//! they were decided, so the body is the same as one thread's.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};

use d2o_delta::{ActiveFiles, FileEntry};

use crate::ApiError;
use crate::stream::LineWriter;

/// Files rendered per slice: large enough that handing a slice over costs nothing next to it.
pub(crate) const SLICE_FILES: usize = 1024;

/// Files of one segment to list, by index in the segment.
pub(crate) struct Slice {
    pub(crate) segment: Arc<ActiveFiles>,
    pub(crate) files: Vec<u32>,
}

/// The lines of a slice and what they list, for the audit.
pub(crate) struct Rendered {
    text: String,
    files: i64,
    bytes: i64,
}

/// Second threads running, in all listings.
static SECOND_THREADS: AtomicUsize = AtomicUsize::new(0);

/// A place for one more second thread: at most one per core, whatever the number of listings
/// (a listing without one renders all its slices itself).
struct SecondThread;

impl SecondThread {
    fn take() -> Option<SecondThread> {
        // Read once: on Linux the standard library reads the cgroup's files for it every time.
        static CORES: LazyLock<usize> = LazyLock::new(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if SECOND_THREADS.fetch_add(1, Ordering::AcqRel) < *CORES {
            Some(SecondThread)
        } else {
            SECOND_THREADS.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for SecondThread {
    fn drop(&mut self) {
        SECOND_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The second thread, as the first sees it: where to send slices, where their lines come back.
type Second = (mpsc::SyncSender<Slice>, mpsc::Receiver<Result<Rendered, ApiError>>);

/// Writes one file's line (without the newline).
pub(crate) trait RenderLine: FnMut(&FileEntry<'_>, &mut String) -> Result<(), ApiError> {}
impl<F: FnMut(&FileEntry<'_>, &mut String) -> Result<(), ApiError>> RenderLine for F {}

fn render(line: &mut impl RenderLine, slice: &Slice) -> Result<Rendered, ApiError> {
    let mut out = Rendered { text: String::with_capacity(slice.files.len() * 800), files: 0, bytes: 0 };
    for &i in &slice.files {
        let entry = slice.segment.get(i as usize).ok_or_else(|| ApiError::internal("a file index is out of range"))?;
        line(&entry, &mut out.text)?;
        out.text.push('\n');
        out.files += 1;
        out.bytes += entry.size();
    }
    Ok(out)
}

/// Runs `list`, which hands over the slices to list in order, and writes their lines to `w`.
/// `renderer` makes a line renderer for each thread (it may hold what is not `Send`, such as a
/// URL signer). Stops when `list` breaks, the client has gone, or a line cannot be rendered
/// (that error is returned; nothing of its slice is written).
pub(crate) fn write_in_order<R: RenderLine>(
    w: &mut LineWriter,
    renderer: &(dyn Fn() -> Result<R, ApiError> + Sync),
    list: impl FnOnce(&mut dyn FnMut(Slice) -> ControlFlow<()>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut own = renderer()?;
    // Signers of object stores need the runtime the listing runs beside.
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|s| {
        let mut second: Option<Second> = None;
        // Whether the second thread holds the slice before the next one.
        let mut theirs_pending = false;
        let mut failure = None;
        let mut count = 0usize;
        let mut submit = |slice: Slice| -> Result<ControlFlow<()>, ApiError> {
            count += 1;
            if count == 2 {
                second = SecondThread::take().map(|place| {
                    let (to, jobs) = mpsc::sync_channel::<Slice>(1);
                    let (done, from) = mpsc::sync_channel(1);
                    let runtime = runtime.clone();
                    s.spawn(move || {
                        let _place = place;
                        let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                        let mut line = match renderer() {
                            Ok(line) => line,
                            Err(e) => {
                                let _ = done.send(Err(e));
                                return;
                            }
                        };
                        for slice in jobs {
                            if done.send(render(&mut line, &slice)).is_err() {
                                return;
                            }
                        }
                    });
                    (to, from)
                });
            }
            if count.is_multiple_of(2)
                && let Some((to, _)) = &second
            {
                to.send(slice).map_err(|_| ApiError::internal("the second renderer stopped"))?;
                theirs_pending = true;
                return Ok(ControlFlow::Continue(()));
            }
            let mine = render(&mut own, &slice)?;
            if std::mem::take(&mut theirs_pending) && write_theirs(w, &second)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            Ok(w.rendered(mine.text, mine.files, mine.bytes))
        };
        let listed = list(&mut |slice| match submit(slice) {
            Ok(flow) => flow,
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        listed?;
        if theirs_pending {
            // Whether the client is still there no longer matters: this was the last slice.
            let _ = write_theirs(w, &second)?;
        }
        Ok(())
        // Leaving the scope drops the sender: the second thread ends.
    })
}

fn write_theirs(w: &mut LineWriter, second: &Option<Second>) -> Result<ControlFlow<()>, ApiError> {
    let (_, from) = second.as_ref().ok_or_else(|| ApiError::internal("no second renderer"))?;
    let theirs = from.recv().map_err(|_| ApiError::internal("the second renderer stopped"))??;
    Ok(w.rendered(theirs.text, theirs.files, theirs.bytes))
}
