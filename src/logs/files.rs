//! From a service name to its files: the configured globs, expanded on every query so rotated
//! files are found without a reload. The directory part of a glob is literal and only the file
//! name takes `*` and `?`, so expanding one is a single directory listing.

use std::path::{Path, PathBuf};

use super::config::{LogsSettings, SERVICE_PLACEHOLDER};
use super::{FileProblem, LogsError};

/// Every service: the explicit ones, and each directory that `service_files` has for `{service}`.
pub(crate) fn services(settings: &LogsSettings) -> Vec<String> {
    let mut names: Vec<String> = settings.services.keys().cloned().collect();
    if let Some(glob) = &settings.service_files {
        names.extend(discovered_services(glob));
    }
    names.sort();
    names.dedup();
    names
}

/// Splits `…/{service}/rest` into the parent directory and `rest`.
fn split_placeholder(glob: &str) -> Option<(PathBuf, PathBuf)> {
    let path = Path::new(glob);
    let mut parent = PathBuf::new();
    let mut components = path.components();
    for component in components.by_ref() {
        if component.as_os_str() == SERVICE_PLACEHOLDER {
            return Some((parent, components.as_path().to_path_buf()));
        }
        parent.push(component);
    }
    None
}

fn discovered_services(glob: &str) -> Vec<String> {
    let Some((parent, _)) = split_placeholder(glob) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&parent) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// The globs of `service`. The name only selects among configured entries and listed
/// directories; it is never joined into a path unless it is one of those directory names.
fn globs_of(settings: &LogsSettings, service: &str) -> Result<Vec<String>, LogsError> {
    if let Some(globs) = settings.services.get(service) {
        return Ok(globs.clone());
    }
    if let Some(glob) = &settings.service_files
        && let Some((parent, rest)) = split_placeholder(glob)
        && let Some(directory) = discovered_services(glob).into_iter().find(|name| name == service)
    {
        return Ok(vec![parent.join(directory).join(rest).display().to_string()]);
    }
    Err(LogsError::UnknownService(service.to_owned()))
}

/// The files of `service`, sorted, and the globs that named nothing readable.
pub(crate) fn files_of(settings: &LogsSettings, service: &str) -> Result<(Vec<PathBuf>, Vec<FileProblem>), LogsError> {
    let globs = globs_of(settings, service)?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut unmatched_patterns = Vec::new();
    for glob in &globs {
        let path = Path::new(glob);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            // A literal path: it must be there.
            match std::fs::metadata(path) {
                Ok(metadata) if metadata.is_file() => files.push(path.to_path_buf()),
                Ok(_) => problems.push(FileProblem { path: glob.clone(), problem: "not a regular file".into() }),
                Err(error) => problems.push(FileProblem { path: glob.clone(), problem: error.to_string() }),
            }
            continue;
        }
        let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) => {
                problems
                    .push(FileProblem { path: glob.clone(), problem: format!("cannot list the directory: {error}") });
                continue;
            }
        };
        let before = files.len();
        for entry in entries.filter_map(Result::ok) {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else { continue };
            if wildcard_match(name.as_bytes(), file_name.as_bytes()) && entry.path().is_file() {
                files.push(entry.path());
            }
        }
        if files.len() == before {
            unmatched_patterns.push(glob.clone());
        }
    }
    // Rotated-file patterns matching nothing are normal; a service with no file at all is not.
    if files.is_empty() && problems.is_empty() {
        for glob in unmatched_patterns {
            problems.push(FileProblem { path: glob, problem: "no file matches".into() });
        }
    }
    files.sort();
    files.dedup();
    Ok((files, problems))
}

/// `*` (any run) and `?` (one byte) matching, iterative with one backtrack point.
pub(crate) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogsConfig;

    #[test]
    fn wildcards_match_rotated_names() {
        assert!(wildcard_match(b"app.log*", b"app.log"));
        assert!(wildcard_match(b"app.log*", b"app.log.1"));
        assert!(wildcard_match(b"app.*.log.gz", b"app.2026-11-24.0.log.gz"));
        assert!(wildcard_match(b"app.log.?", b"app.log.2"));
        assert!(!wildcard_match(b"app.log.?", b"app.log.10"));
        assert!(!wildcard_match(b"app.log*", b"other.log"));
        assert!(wildcard_match(b"*", b""));
    }

    #[test]
    fn explicit_and_discovered_services_resolve_to_their_files_only() {
        let dir = tempfile::tempdir().unwrap();
        for service in ["orders", "payments"] {
            std::fs::create_dir_all(dir.path().join(service)).unwrap();
            for name in ["app.log", "app.log.1", "other.txt"] {
                std::fs::write(dir.path().join(service).join(name), "").unwrap();
            }
        }
        let config = LogsConfig {
            services: [("legacy".to_owned(), vec![format!("{}/orders/other.txt", dir.path().display())])].into(),
            service_files: Some(format!("{}/{{service}}/app.log*", dir.path().display())),
            ..LogsConfig::default()
        };
        let settings = config.validate().unwrap();
        assert_eq!(services(&settings), ["legacy", "orders", "payments"]);
        let (files, problems) = files_of(&settings, "payments").unwrap();
        let names: Vec<_> = files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, ["payments/app.log", "payments/app.log.1"]);
        assert!(problems.is_empty());
        assert_eq!(files_of(&settings, "legacy").unwrap().0.len(), 1);
        for unknown in ["../payments", "payments/..", "", "nope", "."] {
            assert_eq!(files_of(&settings, unknown).unwrap_err(), LogsError::UnknownService(unknown.into()));
        }
    }

    #[test]
    fn a_missing_literal_file_is_a_problem_not_an_error() {
        let config = LogsConfig {
            services: [(
                "a".to_owned(),
                vec!["/nonexistent/dir/app.log".to_owned(), "/nonexistent/dir/app.log.*".to_owned()],
            )]
            .into(),
            ..LogsConfig::default()
        };
        let (files, problems) = files_of(&config.validate().unwrap(), "a").unwrap();
        assert!(files.is_empty());
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "/nonexistent/dir/app.log");
    }
}
