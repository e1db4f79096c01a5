//! Length-prefixed frames on a byte stream.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes. The
//! reader refuses a length over the limit before allocating anything, so a
//! peer cannot make us reserve memory it never sends. Every write is flushed:
//! under madsim, stream bytes move only on `flush()`.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read. The stream cannot be resynchronised after
/// any of them; the caller closes it.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame over the limit.
    #[error("{len}-byte frame over the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    writer.write_all(&len.to_le_bytes()).await?;
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Reads one frame of at most `max` bytes; `None` at a clean end of stream
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            read => filled += read,
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut bytes = vec![0; len];
    reader.read_exact(&mut bytes).await.map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(error),
    })?;
    Ok(Some(bytes))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_even_when_the_reader_gets_one_byte_at_a_time() {
        let (mut client, server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            write_frame(&mut client, b"hello").await.unwrap();
            write_frame(&mut client, b"").await.unwrap();
        });
        let mut server = server;
        assert_eq!(read_frame(&mut server, 16).await.unwrap(), Some(b"hello".to_vec()));
        assert_eq!(read_frame(&mut server, 16).await.unwrap(), Some(Vec::new()));
        writer.await.unwrap();
        assert!(read_frame(&mut server, 16).await.unwrap().is_none(), "clean end between frames");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_anything_is_allocated() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
        let error = read_frame(&mut bytes, 1024).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { len: 0x7fff_ffff, max: 1024 }), "{error}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_a_frame_is_an_error() {
        let mut inside_prefix: &[u8] = &[5, 0];
        assert!(matches!(read_frame(&mut inside_prefix, 16).await, Err(FrameError::Truncated)));
        let mut inside_body: &[u8] = &[5, 0, 0, 0, b'a', b'b'];
        assert!(matches!(read_frame(&mut inside_body, 16).await, Err(FrameError::Truncated)));
    }
}
