//! Checkouts at their pinned commits: fetch only what is needed, never reuse a foreign checkout,
//! never touch the network when a checkout is already at its pin.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository, RepositoryOpenFlags};

use super::{SourceError, Workspace, worktree};
use crate::git::{self, Fetched, local};
use crate::pins::Repo;

/// What `fetch` did for one repo.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub repo: String,
    pub path: PathBuf,
    pub commit: String,
    /// `None` when the checkout was already at its pin (no network used).
    pub fetched: Option<Fetched>,
    pub submodules_updated: bool,
}

/// Puts the repo's checkout at its pinned commit, detached.
pub fn fetch(ws: &Workspace, repo: &Repo) -> Result<FetchReport, SourceError> {
    let path = ws.checkout(&repo.dir);
    let git_repo = open_or_init(repo, &path)?;
    let pin = Oid::from_str(&repo.commit).map_err(local(&repo.name, "commit id"))?;
    let head = git_repo.head().ok().and_then(|h| h.target());
    let detached = git_repo.head_detached().unwrap_or(false);
    let mut fetched = None;
    if head != Some(pin) || !detached {
        if git_repo.path().join(NEW_CHECKOUT).exists() {
            remove_own_locks(&git_repo)?;
        } else {
            refuse_locked(&git_repo, repo)?;
        }
    }
    if head == Some(pin) && !detached {
        // On a branch at the pin: detach without touching a file (the branch stays).
        git_repo
            .set_head_detached(pin)
            .map_err(local(&repo.name, "detaching HEAD at the pin"))?;
        git_repo
            .reference(LAST_PIN, pin, true, "pinstack: the pin checked out")
            .map_err(local(&repo.name, "recording the pin"))?;
    } else if head != Some(pin) {
        let how = git::ensure_commit(&git_repo, &repo.name, &repo.url, &repo.commit)?;
        let made_here = git_repo.path().join(NEW_CHECKOUT);
        let fresh = head.is_none();
        if fresh && !made_here.exists() {
            // A repository with no commit yet that pinstack did not make (a person's
            // `git init`): its files are not overwritten unless they are the pin's.
            refuse_other_files(&git_repo, repo, pin)?;
        }
        checkout_pin(&git_repo, repo, pin, fresh)?;
        fetched = Some(how);
    }
    // HEAD is at the pin: the checkout is done, and the marker goes (also one a fetch killed
    // between its checkout and this line left: it must not outlive the checkout, since it lets
    // a later fetch remove lock files).
    crate::fault::point("fetch-before-marker", 1);
    let marker = git_repo.path().join(NEW_CHECKOUT);
    // Only when there: a checkout at its pin on a read-only mount is never written.
    if marker.exists() {
        crate::fsutil::remove_file_if_present(&marker).map_err(SourceError::io(&marker))?;
    }
    let submodules_updated = repo.submodules && update_submodules(&git_repo, repo, &path)?;
    Ok(FetchReport {
        repo: repo.name.clone(),
        path,
        commit: repo.commit.clone(),
        fetched,
        submodules_updated,
    })
}

/// Opens the checkout, or makes an empty repository whose origin is the pinned URL.
pub(super) fn open_or_init(repo: &Repo, path: &Path) -> Result<Repository, SourceError> {
    let empty = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(SourceError::io(path)(e)),
    };
    if empty {
        // Made beside the target and renamed into place, so a kill never leaves a folder that is
        // half a repository: the target is either absent, empty, or a repository with its origin.
        let parent = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let staging = parent.join(format!(".{name}.pinstack-init"));
        if staging.exists() {
            // Left by a killed fetch, it holds a repository (and perhaps a temporary file
            // libgit2 was writing) and nothing else; anything more is someone's, and stays.
            let others: Vec<String> = std::fs::read_dir(&staging)
                .map_err(SourceError::io(&staging))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".git" && !n.starts_with("_git2_"))
                .collect();
            if !others.is_empty() {
                return Err(SourceError::Refused {
                    repo: repo.name.clone(),
                    message: format!(
                        "{} is where pinstack makes the checkout before moving it into place, \
                         but it holds files ({}); nothing was written: move it away",
                        staging.display(),
                        others.join(", ")
                    ),
                });
            }
            std::fs::remove_dir_all(&staging).map_err(SourceError::io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(SourceError::io(&staging))?;
        {
            let r =
                Repository::init(&staging).map_err(local(&repo.name, "creating the checkout"))?;
            r.remote("origin", &repo.url)
                .map_err(local(&repo.name, "recording the origin url"))?;
            let mark = r.path().join(NEW_CHECKOUT);
            std::fs::write(&mark, b"").map_err(SourceError::io(&mark))?;
        }
        if path.exists() {
            std::fs::remove_dir(path).map_err(SourceError::io(path))?;
        }
        std::fs::rename(&staging, path).map_err(SourceError::io(path))?;
        return Repository::open(path)
            .map_err(|e| local(&repo.name, "opening the checkout")(e).into());
    }
    let r = open_checkout(repo, path)?;
    let found = r
        .find_remote("origin")
        .ok()
        .and_then(|o| o.url().map(str::to_owned))
        .unwrap_or_default();
    if normalise(&found) != normalise(&repo.url) {
        return Err(SourceError::OtherOrigin {
            repo: repo.name.clone(),
            path: path.to_owned(),
            found: if found.is_empty() {
                "no origin".to_owned()
            } else {
                found
            },
            expected: repo.url.clone(),
        });
    }
    Ok(r)
}

/// Opens an existing checkout exactly at `path` (never a repository above it).
pub(super) fn open_checkout(repo: &Repo, path: &Path) -> Result<Repository, SourceError> {
    Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
    .ok()
    .filter(|r| r.workdir().is_some())
    .ok_or_else(|| SourceError::NotACheckout {
        repo: repo.name.clone(),
        path: path.to_owned(),
    })
}

fn normalise(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix(".git").unwrap_or(url)
}

/// Marks a repository pinstack made, until its first checkout is done: files in it are the
/// pin's (a killed checkout's), and the next fetch may finish writing them.
const NEW_CHECKOUT: &str = "pinstack-new-checkout";

/// The lock files libgit2 takes inside pinstack while it makes a checkout: the index, HEAD, the
/// config, the pin's ref. (The `git` program pinstack runs takes others, which it waits out.)
const OWN_LOCKS: [&str; 4] = [
    "index.lock",
    "HEAD.lock",
    "config.lock",
    "refs/pinstack/pin.lock",
];

/// In a checkout pinstack made and has not finished (the marker is there), a lock file of
/// [`OWN_LOCKS`] was left by a pinstack that was killed while it held it: one pinstack runs per
/// workspace, and no one else works in a checkout that is not made yet. It is removed, so that
/// the rerun can finish the checkout.
fn remove_own_locks(r: &Repository) -> Result<(), SourceError> {
    for lock in OWN_LOCKS {
        let path = r.path().join(lock);
        crate::fsutil::remove_file_if_present(&path).map_err(SourceError::io(&path))?;
    }
    Ok(())
}

/// In any other checkout, a lock file of the index or of HEAD belongs to a git command that is
/// running there, or to one that was killed: as git does, pinstack refuses before writing
/// anything, and says how to go on.
fn refuse_locked(r: &Repository, repo: &Repo) -> Result<(), SourceError> {
    let held: Vec<String> = ["index.lock", "HEAD.lock"]
        .iter()
        .map(|l| r.path().join(l))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(SourceError::Refused {
        repo: repo.name.clone(),
        message: format!(
            "{} exists: another git command is running in the checkout, or one was killed; \
             nothing was written; when none is running, remove it and run again",
            held.join(" and ")
        ),
    })
}

/// Refuses when a file (or folder) stands where the pinned tree has a file with other content.
fn refuse_other_files(r: &Repository, repo: &Repo, pin: Oid) -> Result<(), SourceError> {
    let Some(workdir) = r.workdir() else {
        return Ok(());
    };
    let tree = r
        .find_commit(pin)
        .and_then(|c| c.tree())
        .map_err(local(&repo.name, "reading the pinned tree"))?;
    let mut differ = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let rel = format!("{dir}{}", entry.name().unwrap_or_default());
        let path = workdir.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return git2::TreeWalkResult::Ok;
        };
        let bytes = if meta.file_type().is_symlink() {
            std::fs::read_link(&path)
                .ok()
                .map(|t| t.into_os_string().into_encoded_bytes())
        } else if meta.is_file() {
            std::fs::read(&path).ok()
        } else {
            None
        };
        let same = bytes
            .and_then(|b| Oid::hash_object(git2::ObjectType::Blob, &b).ok())
            .is_some_and(|id| id == entry.id());
        if !same {
            differ.push(rel);
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(local(&repo.name, "reading the pinned tree"))?;
    if differ.is_empty() {
        return Ok(());
    }
    differ.sort();
    let listing: Vec<&str> = differ.iter().take(10).map(String::as_str).collect();
    Err(SourceError::Refused {
        repo: repo.name.clone(),
        message: format!(
            "the checkout has no commit yet and holds files where the pin has others ({}): they \
             are in no commit, so nothing was written; move them away and run again",
            listing.join(", ")
        ),
    })
}

fn checkout_pin(r: &Repository, repo: &Repo, pin: Oid, fresh: bool) -> Result<(), SourceError> {
    if !fresh {
        let dirty = worktree::changed_paths(r, &repo.name)?;
        if !dirty.is_empty() {
            let listing: Vec<&str> = dirty.iter().take(10).map(String::as_str).collect();
            return Err(SourceError::Refused {
                repo: repo.name.clone(),
                message: format!(
                    "the checkout is not at the pin and has local changes ({}); `pinstack apply \
                     {}` replaces bundles pinstack applied itself; other changes: commit or move \
                     them, or run `pinstack apply --force {}` to save them as a rescue bundle first",
                    listing.join(", "),
                    repo.name,
                    repo.name
                ),
            });
        }
    }
    let commit = r
        .find_commit(pin)
        .map_err(local(&repo.name, "reading the pinned commit"))?;
    keep_head_reachable(r, repo, Some(pin))?;
    // A file git ignores where the pin has a file is in no commit: libgit2 overwrites it unless
    // told not to, and then names it as a conflict (before writing anything).
    let in_the_way = std::cell::RefCell::new(Vec::new());
    let mut co = CheckoutBuilder::new();
    if fresh {
        co.force();
        // libgit2 looks up every file's attributes, resolving each file's full path (two
        // `realpath`s, a `readlink` per folder on the way): a fifth of a fresh checkout. Where
        // no attributes can exist, no filter can apply, and the lookups are skipped.
        // Only in a folder pinstack made, which holds no `.gitattributes` of its own.
        let made_here = r.path().join(NEW_CHECKOUT).exists();
        let tree = commit
            .tree()
            .map_err(local(&repo.name, "reading the pinned tree"))?;
        if made_here && worktree::no_filters_apply(r, &tree) {
            co.disable_filters(true);
        }
    } else {
        co.safe()
            .overwrite_ignored(false)
            .notify_on(git2::CheckoutNotificationType::CONFLICT)
            .notify(|_, path, _, _, _| {
                if let Some(p) = path {
                    in_the_way
                        .borrow_mut()
                        .push(p.to_string_lossy().into_owned());
                }
                true
            });
    }
    let done = r.checkout_tree(commit.as_object(), Some(&mut co));
    drop(co);
    let in_the_way = in_the_way.into_inner();
    if done.is_err() && !in_the_way.is_empty() {
        return Err(SourceError::Refused {
            repo: repo.name.clone(),
            message: format!(
                "the pin has files where the checkout holds files git ignores ({}): they are in \
                 no commit, so nothing was written; move them away and run again",
                in_the_way.join(", ")
            ),
        });
    }
    done.map_err(local(&repo.name, "checking out the pinned commit"))?;
    crate::fault::point("fetch-checked-out", 1);
    r.set_head_detached(pin)
        .map_err(local(&repo.name, "detaching HEAD at the pin"))?;
    r.reference(LAST_PIN, pin, true, "pinstack: the pin checked out")
        .map_err(local(&repo.name, "recording the pin"))?;
    Ok(())
}

/// The pin pinstack last checked out (a commit HEAD may hold without being anyone's work).
const LAST_PIN: &str = "refs/pinstack/pin";

/// Before HEAD moves to the pin: a commit of HEAD's that no branch, tag or other ref reaches,
/// and the pin does not descend from (a person's commit on the detached checkout), is kept
/// under `refs/pinstack/kept/<id>`, so that moving HEAD never leaves it to the reflog alone.
fn keep_head_reachable(r: &Repository, repo: &Repo, pin: Option<Oid>) -> Result<(), SourceError> {
    let Some(head) = r.head().ok().and_then(|h| h.target()) else {
        return Ok(());
    };
    // The pin pinstack last checked out is no person's work.
    if r.refname_to_id(LAST_PIN).ok() == Some(head) {
        return Ok(());
    }
    let reaches = |tip: Oid| tip == head || r.graph_descendant_of(tip, head).unwrap_or(false);
    if pin.is_some_and(reaches) {
        return Ok(());
    }
    // A commit fetched alone (`--depth 1`: none of its parents is here) is an earlier pin, not
    // a person's work.
    let fetched_alone = r
        .find_commit(head)
        .is_ok_and(|c| c.parent_ids().all(|p| r.find_commit(p).is_err()));
    if fetched_alone {
        return Ok(());
    }
    let refs = r.references().map_err(local(&repo.name, "listing refs"))?;
    let reached = refs
        .flatten()
        .filter(|rf| rf.name() != Some("HEAD"))
        .filter_map(|rf| rf.resolve().ok().and_then(|t| t.target()))
        .any(reaches);
    if !reached {
        r.reference(
            &format!("refs/pinstack/kept/{head}"),
            head,
            true,
            "pinstack: a commit HEAD held before it moved to the pin",
        )
        .map_err(local(&repo.name, "keeping HEAD's commit reachable"))?;
    }
    Ok(())
}

/// [`keep_head_reachable`] in every submodule whose HEAD is not the commit the checkout now
/// records for it, and in every submodule below those, at any depth. Below the first level the
/// commit the update will move to is not known yet (the parent moves first): a HEAD there is
/// kept unless a ref of its own reaches it.
fn keep_submodule_heads(
    submodules: &[git2::Submodule<'_>],
    repo: &Repo,
    nested: bool,
) -> Result<(), SourceError> {
    for s in submodules {
        let Ok(sub) = s.open() else {
            continue;
        };
        match (s.workdir_id(), s.head_id()) {
            (Some(now), Some(want)) if !nested && now != want => {
                keep_head_reachable(&sub, repo, Some(want))?;
            }
            _ if nested => keep_head_reachable(&sub, repo, None)?,
            _ => {}
        }
        let below = sub
            .submodules()
            .map_err(local(&repo.name, "reading submodules"))?;
        keep_submodule_heads(&below, repo, true)?;
    }
    Ok(())
}

/// Initialises and updates submodules when any is missing or not at its recorded commit.
fn update_submodules(r: &Repository, repo: &Repo, path: &Path) -> Result<bool, SourceError> {
    let submodules = r
        .submodules()
        .map_err(local(&repo.name, "reading submodules"))?;
    let current = submodules
        .iter()
        .all(|s| s.workdir_id().is_some() && s.workdir_id() == s.head_id());
    if current {
        return Ok(false);
    }
    // A commit a person made in a submodule (on its detached HEAD), at any depth, is kept
    // reachable before the recursive update moves that HEAD, as the checkout's own are.
    keep_submodule_heads(&submodules, repo, false)?;
    git::run(
        &repo.name,
        path,
        &["submodule", "update", "--init", "--recursive", "--quiet"],
    )?;
    Ok(true)
}
