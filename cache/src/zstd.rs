//! zstd-compressed layers (`application/vnd.oci.image.layer.v1.tar+zstd`), decoded with
//! ruzstd (pure Rust): every frame of the stream in turn, skippable frames (zstd:chunked
//! metadata) passed over. Integrity is the caller's: the diff_id covers the decoded bytes.

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use std::io::{self, BufRead, Read};

/// A reader of the concatenated frames of a zstd stream.
pub(crate) struct Frames<R> {
    source: R,
    dec: FrameDecoder,
    /// A frame is being decoded (its header was read).
    in_frame: bool,
}

impl<R: BufRead> Frames<R> {
    pub(crate) fn new(source: R) -> Self {
        Frames {
            source,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Reads the next frame header; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.dec.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            // Decode until there is enough to fill `buf` or the frame ends.
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                self.dec
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(want))
                    .map_err(io::Error::other)?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() {
                self.in_frame = false; // on to the next frame
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_frames_and_a_skippable_one_decode_as_one_stream() {
        let a = vec![b'a'; 300_000];
        let b = b"second frame".to_vec();
        let mut z =
            ruzstd::encoding::compress_to_vec(&a[..], ruzstd::encoding::CompressionLevel::Fastest);
        // A skippable frame (magic 0x184D2A5?, length, payload) between the two.
        z.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        z.extend_from_slice(&5u32.to_le_bytes());
        z.extend_from_slice(b"meta!");
        z.extend(ruzstd::encoding::compress_to_vec(
            &b[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let mut out = Vec::new();
        Frames::new(io::BufReader::new(&z[..]))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert!(out.starts_with(&a) && out.ends_with(&b));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut z = ruzstd::encoding::compress_to_vec(
            &b"x"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        z.truncate(z.len() - 2);
        z.extend_from_slice(&[0xff; 16]);
        let mut out = Vec::new();
        assert!(
            Frames::new(io::BufReader::new(&z[..]))
                .read_to_end(&mut out)
                .is_err()
        );
    }
}
