//! From a service name to its open files: the configured globs, expanded on every query so
//! rotated files are found without a reload. The directory part of a glob is literal and only
//! the file name takes `*` and `?`, so expanding one is a single directory listing.
//!
//! **Rotation.** A listing is only true for the moment it was taken: if `app.log` is renamed to
//! `app.log.1` (and a new `app.log` created) after the listing, opening the listed names reads
//! the new `app.log` and misses the old one, or reads the old one twice (as `app.log`, opened
//! before the rename, and as `app.log.1`, after it). So [`open_listed`]:
//! - opens every listed file right after the listing, before reading any, so the moments between
//!   listing and opening are a few system calls, not the length of a scan; the search then
//!   reads each file through its handle whatever happens to its name
//!   ([`super::search::OpenLogFile`]);
//! - knows each file by (device, inode) ([`FileId`]), as the listing saw it and as the handle
//!   sees it, and keeps one handle per file: a file under two names (a rotation in between, a
//!   hard link, a symlink such as `app.log` → `app.log.2026-11-24`) is read once. Ids are only
//!   compared while every handle opened so far is held, so no inode compared can have been freed
//!   and given to a new file meanwhile;
//! - lists once more when a listed name vanished before it was opened, or named another file
//!   by then: the second listing finds the rotated file under its new name, and any file it
//!   names that is not held already is opened too. Once, because a rotation is a rename of a few
//!   files at once, not a stream; a second rotation within those milliseconds could still make a
//!   file missed, never read twice.
//!
//! So a query holds one descriptor per file it reads. Gzip files last written before the range
//! are not opened at all (the search would skip them unread anyway), so months of archives cost
//! none. Without file ids (not Unix) files cannot be told apart once renamed: nothing is
//! re-listed or merged, and a rotation in between can miss or repeat a file, as before.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::config::{LogsSettings, SERVICE_PLACEHOLDER};
use super::search::OpenLogFile;
use super::{FileProblem, LogsError};

/// Which file a name or handle is: (device, inode). Two names of one file give the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    device: u64,
    inode: u64,
}

/// Whether this platform gives [`FileId`]s: without them, files cannot be matched across names.
const FILE_IDS_KNOWN: bool = cfg!(unix);

impl FileId {
    /// The id of the file `metadata` describes; `None` where the platform does not say.
    #[cfg(unix)]
    pub(crate) fn of(metadata: &Metadata) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        Some(FileId { device: metadata.dev(), inode: metadata.ino() })
    }

    /// The id of the file `metadata` describes; `None` where the platform does not say.
    #[cfg(not(unix))]
    pub(crate) fn of(_metadata: &Metadata) -> Option<FileId> {
        None
    }
}

/// A file found by a listing, and what the listing saw of it.
#[derive(Debug, Clone)]
pub(crate) struct ListedFile {
    path: PathBuf,
    id: Option<FileId>,
    /// Its modification time, ms since the epoch: the moment of its last line.
    modified_ms: Option<i64>,
}

impl ListedFile {
    fn of(path: PathBuf, metadata: &Metadata) -> Self {
        let modified_ms = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_millis() as i64);
        ListedFile { path, id: FileId::of(metadata), modified_ms }
    }

    /// A gzip file whose last line was written before `before_ms`: the search skips it unread,
    /// so it need not be opened.
    fn is_gzip_older_than(&self, before_ms: i64) -> bool {
        self.path.extension().is_some_and(|extension| extension == "gz")
            && self.modified_ms.is_some_and(|modified| modified < before_ms)
    }
}

/// A service's files as one listing found them (sorted by path), and the globs that named
/// nothing readable.
#[derive(Debug)]
pub(crate) struct Listing {
    files: Vec<ListedFile>,
    problems: Vec<FileProblem>,
}

/// A file opened for a query, under the name it was last listed with.
#[derive(Debug)]
pub(crate) struct OpenedFile {
    pub(crate) path: PathBuf,
    pub(crate) file: OpenLogFile,
    id: Option<FileId>,
}

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
pub(crate) fn globs_of(settings: &LogsSettings, service: &str) -> Result<Vec<String>, LogsError> {
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
    let listing = list(settings, service)?;
    Ok((listing.files.into_iter().map(|file| file.path).collect(), listing.problems))
}

/// Lists the files of `service` (see [`files_of`]), with what each name stood for at the time.
pub(crate) fn list(settings: &LogsSettings, service: &str) -> Result<Listing, LogsError> {
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
                Ok(metadata) if metadata.is_file() => files.push(ListedFile::of(path.to_path_buf(), &metadata)),
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
            if !wildcard_match(name.as_bytes(), file_name.as_bytes()) {
                continue;
            }
            let path = entry.path();
            // Followed through symlinks, as opening does.
            if let Ok(metadata) = std::fs::metadata(&path)
                && metadata.is_file()
            {
                files.push(ListedFile::of(path, &metadata));
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
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(Listing { files, problems })
}

/// Opens the files of `listing`, each file once, and lists `service` again if a rotation moved
/// a name meanwhile (see the module docs). Gzip files last written before `skip_gzip_before_ms`
/// are left closed. Returns the files in path order, and the problems of the last listing
/// (its globs, and the files it named that could not be opened).
pub(crate) fn open_listed(
    settings: &LogsSettings,
    service: &str,
    listing: Listing,
    skip_gzip_before_ms: i64,
) -> (Vec<OpenedFile>, Vec<FileProblem>) {
    let mut opened = Vec::new();
    let (mut problems, moved) = open_new_files(listing, skip_gzip_before_ms, &mut opened);
    // Only the service's directory vanishing between the two listings can fail this one: then
    // what the first one opened is all there is.
    if moved
        && FILE_IDS_KNOWN
        && let Ok(again) = list(settings, service)
    {
        // The last listing's names, for the answer: a file held since before the rotation goes
        // by its new name. The first name in path order, as the first listing kept.
        let mut names: HashMap<FileId, PathBuf> = HashMap::new();
        for listed in &again.files {
            if let Some(id) = listed.id {
                names.entry(id).or_insert_with(|| listed.path.clone());
            }
        }
        (problems, _) = open_new_files(again, skip_gzip_before_ms, &mut opened);
        for file in &mut opened {
            if let Some(name) = file.id.and_then(|id| names.get(&id)) {
                file.path.clone_from(name);
            }
        }
        opened.sort_by(|a, b| a.path.cmp(&b.path));
    }
    (opened, problems)
}

/// Opens each file of `listing` that `opened` does not hold yet, and adds it there. Returns the
/// problems (the listing's, and the files that could not be opened), and whether a name had
/// moved since the listing: it vanished before it could be opened, or named another file.
fn open_new_files(
    listing: Listing,
    skip_gzip_before_ms: i64,
    opened: &mut Vec<OpenedFile>,
) -> (Vec<FileProblem>, bool) {
    let Listing { files, mut problems } = listing;
    let mut moved = false;
    let held = |opened: &[OpenedFile], id: Option<FileId>| id.is_some() && opened.iter().any(|file| file.id == id);
    for listed in files {
        if listed.is_gzip_older_than(skip_gzip_before_ms) || held(opened, listed.id) {
            continue;
        }
        let file = OpenLogFile::open(&listed.path).and_then(|file| Ok((file.id()?, file)));
        match file {
            Ok((id, file)) => {
                moved |= id != listed.id;
                // A second name of a file held already (a hard link or symlink, or the rotation
                // that `moved` catches): one handle is enough.
                if !held(opened, id) {
                    opened.push(OpenedFile { path: listed.path, file, id });
                }
            }
            Err(error) => {
                moved |= error.kind() == io::ErrorKind::NotFound;
                problems.push(FileProblem { path: listed.path.display().to_string(), problem: error.to_string() });
            }
        }
    }
    (problems, moved)
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
