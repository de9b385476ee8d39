//! Reading flow-log files: [`open`] (a file, `-` for stdin, gzip detected by its magic bytes) and [`Reader`], which
//! reads lines as bytes, detects each line's format (or uses the forced one), and parses it into an [`Observed`].

use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::Context;

use super::{calico, gadget, hubble, knp, netpol, FlowFormat, LineError, Observed};
use crate::query::{not_utf8, read_line};

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a flow log for reading: `-` is stdin; a gzip stream (known by its magic bytes, not its name) is
/// decompressed, concatenated gzip members (rotated logs joined with `cat`) included.
pub fn open(path: &str) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let input: Box<dyn BufRead + Send> = if path == "-" {
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin()))
    } else {
        let f = File::open(path).with_context(|| format!("cannot open flow log {path}"))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    decompressed(input).with_context(|| format!("cannot read flow log {path}"))
}

/// `input`, decompressed when it is a gzip stream (known by its magic bytes), concatenated gzip members
/// included; else `input` itself. For logs that are not files (a request body: `Box::new(Cursor::new(bytes))`).
pub fn decompressed<'a>(mut input: Box<dyn BufRead + Send + 'a>) -> std::io::Result<Box<dyn BufRead + Send + 'a>> {
    if input.fill_buf()?.starts_with(&GZIP_MAGIC) {
        return Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(input))));
    }
    Ok(input)
}

/// Reads the flow events of one log, line by line: `next` gives each event read, or the error of a line that
/// could not be read (and reading goes on with the next line; only an I/O error ends it).
///
/// Blank lines are skipped; so is a UTF-8 byte-order mark at the start. Lines that are valid but carry no flow (a
/// Hubble node-status or lost-events message, a kube-network-policies packet line whose verdict comes later, a log
/// line about something else) are skipped and counted ([`Reader::skipped`]).
pub struct Reader<R = Box<dyn BufRead + Send>> {
    file: String,
    input: R,
    forced: Option<FlowFormat>,
    line: u64,
    buf: Vec<u8>,
    skipped: u64,
    done: bool,
    knp: knp::Joiner,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`, named `file` in errors; `forced` reads every line in that format instead of
    /// detecting each line's.
    pub fn new(file: &str, input: R, forced: Option<FlowFormat>) -> Self {
        Reader {
            file: file.to_string(),
            input,
            forced,
            line: 0,
            buf: Vec::with_capacity(4096),
            skipped: 0,
            done: false,
            knp: knp::Joiner::default(),
        }
    }

    /// The file name given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// How many lines were read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// How many lines were valid but carried no flow event.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next event, or the error of the next line that could not be read; `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Observed, LineError>> {
        let mut buf = std::mem::take(&mut self.buf);
        let out = self.next_with(&mut buf);
        self.buf = buf;
        out
    }

    fn error(&self, line: u64, message: String) -> LineError {
        LineError { file: self.file.clone(), line, message }
    }

    fn next_with(&mut self, buf: &mut Vec<u8>) -> Option<Result<Observed, LineError>> {
        while !self.done {
            let n = self.line + 1;
            let bytes = match read_line(&mut self.input, buf, n) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.error(n, format!("cannot read line {n}: {e}"))));
                }
            };
            self.line = n;
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => return Some(Err(self.error(n, not_utf8(n, &e)))),
            };
            if text.trim().is_empty() {
                continue;
            }
            match self.parse(text, n) {
                Ok(Some(o)) => return Some(Ok(o)),
                Ok(None) => self.skipped += 1,
                Err(message) => return Some(Err(self.error(n, message))),
            }
        }
        None
    }

    fn parse(&mut self, line: &str, n: u64) -> Result<Option<Observed>, String> {
        let format = match self.forced {
            Some(f) => f,
            None if fast_detect(line).is_some() => match hubble::parse(line, n) {
                // A line that only looked like Hubble's is detected fully.
                Err(e) if FlowFormat::detect(line).is_some_and(|f| f != FlowFormat::Hubble) => {
                    FlowFormat::detect(line).ok_or(e)?
                }
                r => return r,
            },
            None => FlowFormat::detect(line).ok_or_else(|| unknown_shape(line))?,
        };
        match format {
            FlowFormat::Hubble => hubble::parse(line, n),
            FlowFormat::Calico => calico::parse(line, n),
            FlowFormat::KubeNetworkPolicies => self.knp.parse(line, n),
            FlowFormat::Gadget => gadget::parse(line, n),
            FlowFormat::Netpol => netpol::parse(line, n),
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Observed, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        Reader::next(self)
    }
}

/// The format of `hubble observe -o json` lines without a full look: they start with `{"flow":{`.
fn fast_detect(line: &str) -> Option<FlowFormat> {
    let rest = line.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"flow\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('{')?.trim_start();
    // Goldmane's results also have a `flow`, whose first member is its `Key`.
    (!rest.starts_with("\"Key\"") && !rest.starts_with("\"key\"")).then_some(FlowFormat::Hubble)
}

/// Why a line is no format's.
fn unknown_shape(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Err(e) => super::common::json_error("not JSON", &e),
        Ok(serde_json::Value::Object(_)) => "unknown flow-log line: tried hubble (`flow`, or a bare flow's `verdict` \
             with `IP`/`l4`), calico (`Key`, `source_name`, `reporter`), kube-network-policies (`msg` with `ts`), \
             gadget (`saddr`/`daddr`, or `src`/`dst` with `comm`/`pid`), netpol (`src` and `dst`)"
            .to_string(),
        Ok(_) => "unknown flow-log line: a flow-log line is a JSON object".to_string(),
    }
}
