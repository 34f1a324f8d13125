//! What each subcommand does, given its parsed arguments. `main` only dispatches here.

pub mod backtest;
pub mod run;
pub mod score;
pub mod train;

use std::path::Path;

/// Whether `output` names the file or directory `input` names (through a symlink, `..` or a
/// hard link too): writing there would destroy the input before or while it is read.
pub(crate) fn is_same_file(input: &Path, output: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(input), std::fs::metadata(output)) {
        (Ok(input), Ok(output)) => input.dev() == output.dev() && input.ino() == output.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_is_recognised_through_other_spellings_only() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "a\n1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        assert!(is_same_file(&input, &dir.path().join("sub/../in.csv")));
        assert!(is_same_file(&input, &link));
        assert!(is_same_file(dir.path(), &dir.path().join("sub/..")));
        assert!(!is_same_file(&input, &dir.path().join("out.csv")), "an output not yet written");
        std::fs::write(dir.path().join("out.csv"), "").unwrap();
        assert!(!is_same_file(&input, &dir.path().join("out.csv")));
    }
}
