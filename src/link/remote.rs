//! Links between processes: a thread drains a local link into a shared-memory ring, and a
//! thread in the other process reads the ring into the consumers' links.
//!
//! Frames on the ring: one tag byte, a little-endian u32 length, the payload.
//! Tags: 0 = a batch (see `crate::codec`), 1 = end of stream, 2 = end because the cycle went quiet.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::codec;
use crate::link::local::{Channel, End, Recv};
use crate::operator::Element;
use crate::pipeline::ExternalFeed;
use crate::shm::{RingReader, RingWriter, ShmError};

const TAG_BATCH: u8 = 0;
const TAG_END: u8 = 1;
const TAG_END_CYCLE: u8 = 2;

/// A failure of a link between processes.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The ring failed (the other process is gone, or the OS refused).
    #[error("link \"{link}\": {source}")]
    Ring {
        /// The stream the link carries.
        link: String,
        /// The ring's error.
        #[source]
        source: ShmError,
    },
    /// A frame could not be decoded.
    #[error("link \"{link}\": {source}")]
    Codec {
        /// The stream the link carries.
        link: String,
        /// The codec's error.
        #[source]
        source: codec::CodecError,
    },
    /// The writer vanished without ending the stream.
    #[error("link \"{0}\": the producing process went away before the end of the stream")]
    Truncated(String),
    /// An unknown frame tag.
    #[error("link \"{0}\": corrupt frame tag {1}")]
    BadTag(String, u8),
}

/// Starts the thread that writes everything pushed to `chan` into `ring`.
pub fn spawn_writer<T: Element>(
    link: String,
    chan: Arc<Channel<T>>,
    mut ring: RingWriter,
) -> std::io::Result<JoinHandle<Result<(), RemoteError>>> {
    std::thread::Builder::new()
        .name(format!("ring-w:{link}"))
        .spawn(move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            let ring_err = |source| RemoteError::Ring {
                link: link.clone(),
                source,
            };
            loop {
                match chan.take_blocking(None) {
                    Recv::Batch(b) => {
                        buf.clear();
                        buf.extend_from_slice(&[TAG_BATCH, 0, 0, 0, 0]);
                        codec::encode(&b, &mut buf).map_err(|source| RemoteError::Codec {
                            link: link.clone(),
                            source,
                        })?;
                        let len = (buf.len() - 5) as u32;
                        buf[1..5].copy_from_slice(&len.to_le_bytes());
                        if let Err(e) = ring.write_all(&buf) {
                            chan.disconnect_consumer();
                            return Err(ring_err(e));
                        }
                    }
                    Recv::End(e) => {
                        let tag = if e.cycle { TAG_END_CYCLE } else { TAG_END };
                        ring.write_all(&[tag, 0, 0, 0, 0]).map_err(ring_err)?;
                        ring.close();
                        return Ok(());
                    }
                    Recv::Empty => {}
                }
            }
        })
}

/// Starts the thread that reads `ring` and pushes every batch into `feed`.
pub fn spawn_reader<T: Element>(
    link: String,
    mut ring: RingReader,
    feed: ExternalFeed<T>,
) -> std::io::Result<JoinHandle<Result<(), RemoteError>>> {
    std::thread::Builder::new()
        .name(format!("ring-r:{link}"))
        .spawn(move || {
            let mut head = [0u8; 5];
            let mut payload = Vec::new();
            loop {
                match ring.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(ShmError::Eof { .. }) => return Err(RemoteError::Truncated(link)),
                    Err(source) => return Err(RemoteError::Ring { link, source }),
                }
                let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
                match head[0] {
                    TAG_BATCH => {
                        payload.resize(len, 0);
                        ring.read_exact(&mut payload).map_err(|e| match e {
                            ShmError::Eof { .. } => RemoteError::Truncated(link.clone()),
                            source => RemoteError::Ring {
                                link: link.clone(),
                                source,
                            },
                        })?;
                        let batch =
                            codec::decode::<T>(&payload).map_err(|source| RemoteError::Codec {
                                link: link.clone(),
                                source,
                            })?;
                        feed.push(batch);
                    }
                    TAG_END | TAG_END_CYCLE => {
                        feed.close(End {
                            cycle: head[0] == TAG_END_CYCLE,
                        });
                        return Ok(());
                    }
                    t => return Err(RemoteError::BadTag(link, t)),
                }
            }
        })
}
