//! Folded stacks: the `.folded` output, and `--post-process`, which edits them with a command.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::fold::Folded;

/// Writes `folded` as text, one `stack count` per line.
pub fn write(folded: &Folded, writer: &mut dyn Write) -> Result<()> {
    folded
        .write_text(writer)
        .map_err(|e| Error::io("writing folded stacks", e))
}

/// Runs the folded stacks through a shell-quoted command (stdin → stdout), as
/// `--post-process 'sed s/foo/bar/'` or `--post-process 'tee stacks.folded'`. The stacks are
/// consumed as they are written, so the input and the output are not both held whole (a
/// system-wide profile's text is tens of MB).
pub fn post_process(folded: Folded, command: &str) -> Result<Folded> {
    let fail = |reason: String| Error::PostProcess {
        command: command.to_owned(),
        reason,
    };
    let argv = shlex::split(command).ok_or_else(|| fail("unbalanced quotes".into()))?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {program}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| fail("no stdout pipe".into()))?;
    // Written on a thread while this one reads, so a command that writes as it reads never
    // blocks on a full pipe; both directions stream, line by line.
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let Some(stdin) = stdin else { return Ok(()) };
        let mut stdin = std::io::BufWriter::new(stdin);
        for (stack, weight) in folded.into_stacks() {
            writeln!(stdin, "{stack} {weight}")?;
        }
        stdin.flush()
    });
    let output = Folded::read(std::io::BufReader::new(stdout));
    let written = writer
        .join()
        .map_err(|_| fail("writer thread panicked".into()))?;
    let status = child
        .wait()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    // A command that does not read all its input (e.g. `head`) closes the pipe early; that is
    // its right, not an error.
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(fail(format!("writing its input: {e}")));
        }
    }
    if !status.success() {
        return Err(fail(format!("it exited with {status}")));
    }
    output.map_err(|e| match e {
        Error::Malformed(_) => fail(format!("its output is not folded stacks: {e}")),
        e => fail(format!("reading its output: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Folded {
        Folded::parse("prog;main;work_a 6\nprog;main;work_b 3\nprog;main;work_c 1\n").unwrap()
    }

    #[test]
    fn post_process_through_sed() {
        let f = post_process(sample(), "sed 's/work_a/renamed/'").unwrap();
        assert!(f.to_text().contains("prog;main;renamed 6"));
        let err = post_process(sample(), "false").unwrap_err().to_string();
        assert!(err.contains("exited with"), "{err}");
        let err = post_process(sample(), "/nonexistent/cmd")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot start"), "{err}");
    }
}
