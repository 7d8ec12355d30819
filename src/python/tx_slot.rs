//! Where both transaction classes keep their open transaction: behind an
//! async mutex (two threads or tasks sharing one take turns instead of
//! interleaving statements), and marked while an `iter_arrow` stream holds
//! its connection, so a statement sent meanwhile is refused with a reason
//! instead of waiting for a stream its own caller has not finished reading.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use crate::backend::Statement;
use crate::engine::{BatchStream, Database, Transaction};
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Default)]
pub(crate) struct TxSlot {
    tx: Arc<AsyncMutex<Option<Transaction>>>,
    streaming: Arc<AtomicBool>,
    /// Stops the stream holding the connection (the block ends while its
    /// caller has not finished reading it).
    stop: Arc<std::sync::Mutex<Option<CancellationToken>>>,
}

pub(crate) type Claimed<'a> = MutexGuard<'a, Option<Transaction>>;

fn busy(db: &Database, operation: &'static str) -> Error {
    db.fail(
        Error::new(
            ErrorKind::Transaction,
            "the transaction's connection is streaming an iter_arrow result; read it to the end \
             or close() it first",
        ),
        operation,
    )
}

pub(crate) fn not_open(db: &Database, operation: &'static str) -> Error {
    db.fail(
        Error::new(
            ErrorKind::Transaction,
            "the transaction is not open; use it inside its `with` (or `async with`) block",
        ),
        operation,
    )
}

impl TxSlot {
    /// The transaction, for a thread that may block (not an event loop).
    pub(crate) fn claim(&self, db: &Database, operation: &'static str) -> Result<Claimed<'_>> {
        if self.streaming.load(Ordering::Acquire) {
            return Err(busy(db, operation));
        }
        Ok(self.tx.blocking_lock())
    }

    /// The transaction if no other thread or task holds it now (`None`:
    /// [`TxSlot::claim`] waits for it).
    pub(crate) fn try_claim(
        &self,
        db: &Database,
        operation: &'static str,
    ) -> Result<Option<Claimed<'_>>> {
        if self.streaming.load(Ordering::Acquire) {
            return Err(busy(db, operation));
        }
        Ok(self.tx.try_lock().ok())
    }

    /// The transaction, for a task.
    pub(crate) async fn claim_async(
        &self,
        db: &Database,
        operation: &'static str,
    ) -> Result<Claimed<'_>> {
        if self.streaming.load(Ordering::Acquire) {
            return Err(busy(db, operation));
        }
        Ok(self.tx.lock().await)
    }

    /// End the stream that holds the connection, if any, and wait until it
    /// has let go: its rows stay unread on the wire, so the connection is
    /// discarded and the transaction is lost (the server rolls it back).
    /// Leaving the block does this; a statement sent meanwhile is refused.
    pub(crate) async fn stop_stream(&self) {
        let token = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(token) = token {
            token.cancel();
        }
        // The producer resets the flag once it has dropped the connection.
        while self.streaming.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Open, as far as can be seen without waiting (a statement in flight
    /// means it is).
    pub(crate) fn is_active(&self) -> bool {
        self.tx
            .try_lock()
            .map_or(true, |t| t.as_ref().is_some_and(Transaction::is_active))
    }

    /// `tx.iter_arrow`: the statement's batches down a bounded channel,
    /// read on the transaction's connection by a task that holds it until
    /// the result ends.
    pub(crate) fn stream_arrow(
        &self,
        db: &Arc<Database>,
        statement: Statement,
        every: usize,
    ) -> Result<BatchStream> {
        let operation = "transaction.iter_arrow";
        if self.streaming.swap(true, Ordering::AcqRel) {
            return Err(busy(db, operation));
        }
        let (sender, receiver) = mpsc::channel(2);
        let (finished, done) = oneshot::channel::<()>();
        let token = CancellationToken::new();
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        let (slot, streaming, db) = (self.tx.clone(), self.streaming.clone(), db.clone());
        let producer = async move {
            // Dropped last: the reader knows the connection is free again.
            let _finished = finished;
            let outcome = crate::runtime::catch_panic_async(async {
                let mut guard = slot.lock().await;
                match guard.as_mut().filter(|t| t.is_active()) {
                    Some(tx) => tokio::select! {
                        read = tx.stream_arrow(&statement, every.max(1), &sender) => read,
                        // Dropped mid-read, the request leaves its connection
                        // marked in flight: the seam discards it.
                        _ = token.cancelled() => Ok(()),
                    },
                    None => Err(not_open(&db, operation)),
                }
            })
            .await;
            streaming.store(false, Ordering::Release);
            if let Err(e) = outcome {
                let _ = sender.send(Err(e)).await;
            }
        };
        let runtime = crate::runtime::runtime().inspect_err(|_| {
            self.streaming.store(false, Ordering::Release);
        })?;
        runtime.spawn(tracing::Instrument::instrument(
            producer,
            tracing::Span::current(),
        ));
        Ok(BatchStream {
            batches: receiver,
            done,
        })
    }
}
