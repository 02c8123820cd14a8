//! USER resolution against an image's /etc/passwd and /etc/group, with Docker's
//! rules (runc's `GetExecUser`): a numeric uid need not exist, a name must; an
//! explicit `:group` sets the primary gid and disables the groups listing the user.
//! The primary gid always leads the supplementary groups, as docker and BuildKit set
//! them (containerd's additional gids), so `id` prints `groups=` with it.

use std::path::Path;

/// Who a RUN process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub supplementary: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {user}: no matching entries in {file}")]
    UserNotFound { user: String, file: String },
    #[error("unable to find group {group}: no matching entries in {file}")]
    GroupNotFound { group: String, file: String },
    #[error("invalid user specification {spec:?}")]
    Invalid { spec: String },
    #[error("reading {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].trim().parse().ok()?,
            gid: f[3].trim().parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].trim().parse().ok()?,
            members,
        })
    })
}

/// Ids above 2^31-1 are rejected as Docker does.
fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|v| *v <= i32::MAX as u32)
}

/// Resolves `user` (`""`, `name`, `uid`, `uid:gid`, `name:group`, …) against
/// the texts of /etc/passwd and /etc/group (either may be absent).
pub fn resolve(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let (user_arg, group_arg) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if group_arg == Some("") || (user_arg.is_empty() && group_arg.is_some()) {
        return Err(UserError::Invalid {
            spec: user.to_string(),
        });
    }
    let numeric_uid = parse_id(user_arg);
    if user_arg.bytes().all(|b| b.is_ascii_digit()) && !user_arg.is_empty() && numeric_uid.is_none()
    {
        return Err(UserError::Invalid {
            spec: user.to_string(),
        });
    }

    let mut resolved = ResolvedUser {
        uid: 0,
        gid: 0,
        supplementary: Vec::new(),
        home: "/".to_string(),
    };
    let mut name: Option<String> = None;
    let found = passwd.and_then(|text| {
        passwd_entries(text).find(|e| match (user_arg, numeric_uid) {
            ("", _) => e.uid == 0,
            (_, Some(uid)) => e.uid == uid,
            (n, None) => e.name == n,
        })
    });
    match found {
        Some(e) => {
            resolved.uid = e.uid;
            resolved.gid = e.gid;
            if !e.home.is_empty() {
                resolved.home = e.home.to_string();
            }
            name = Some(e.name.to_string());
        }
        None => match numeric_uid {
            Some(uid) => resolved.uid = uid,
            None if user_arg.is_empty() => {}
            None => {
                return Err(UserError::UserNotFound {
                    user: user_arg.to_string(),
                    file: PASSWD.to_string(),
                });
            }
        },
    }

    if let Some(g) = group_arg {
        let by_entry = group.and_then(|text| {
            group_entries(text)
                .find(|e| e.name == g || Some(e.gid) == parse_id(g))
                .map(|e| e.gid)
        });
        resolved.gid = match (by_entry, parse_id(g)) {
            (Some(gid), _) => gid,
            (None, Some(gid)) => gid,
            (None, None) => {
                return Err(UserError::GroupNotFound {
                    group: g.to_string(),
                    file: GROUP.to_string(),
                });
            }
        };
    } else if let (Some(name), Some(text)) = (&name, group) {
        for e in group_entries(text) {
            if e.members.contains(&name.as_str()) && !resolved.supplementary.contains(&e.gid) {
                resolved.supplementary.push(e.gid);
            }
        }
    }
    if !resolved.supplementary.contains(&resolved.gid) {
        resolved.supplementary.insert(0, resolved.gid);
    }
    Ok(resolved)
}

fn read_optional(path: &Path, file: &str) -> Result<Option<String>, UserError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(UserError::Io {
            file: file.to_string(),
            source,
        }),
    }
}

/// Reads /etc/passwd and /etc/group of `rootfs` (symlinks resolved inside it,
/// never outside) and resolves `user` against them.
pub fn resolve_in_rootfs(user: &str, rootfs: &Path) -> Result<ResolvedUser, UserError> {
    fn io(file: &'static str) -> impl Fn(std::io::Error) -> UserError {
        move |source| UserError::Io {
            file: file.to_string(),
            source,
        }
    }
    let passwd = read_optional(
        &crate::rootpath::resolve_in_root(rootfs, PASSWD).map_err(io(PASSWD))?,
        PASSWD,
    )?;
    let group = read_optional(
        &crate::rootpath::resolve_in_root(rootfs, GROUP).map_err(io(GROUP))?,
        GROUP,
    )?;
    resolve(user, passwd.as_deref(), group.as_deref())
}

/// A `--chown` (or WORKDIR's USER) id written as a number: digits, `root` (0), or nothing
/// (0, as BuildKit reads `:gid` and `uid:`); None for a name.
fn chown_id(s: &str) -> Option<u32> {
    match s {
        "" | "root" => Some(0),
        _ => parse_id(s),
    }
}

/// The owner `COPY --chown` / `ADD --chown`, and WORKDIR under USER, give what they
/// create, by BuildKit's rules (its `llb.WithUser` and file op's user lookup), which are
/// not RUN's:
///
/// - a numeric user (or `root`, or none as in `:gid`) is that uid, and the gid is the same
///   number unless a group is given — /etc/passwd is not read, so a uid need not exist;
/// - a user name is looked up in the destination's /etc/passwd: its uid and primary gid;
/// - a group (number, `root`, or a name from /etc/group) replaces the gid.
///
/// A name that is not in the file is an error here; BuildKit silently uses 0 instead.
pub fn resolve_chown(
    user: &str,
    group: Option<&str>,
    passwd: Option<&str>,
    groups: Option<&str>,
) -> Result<(u32, u32), UserError> {
    if user.bytes().all(|b| b.is_ascii_digit()) && !user.is_empty() && parse_id(user).is_none() {
        return Err(UserError::Invalid {
            spec: user.to_string(),
        });
    }
    let (uid, mut gid) = match chown_id(user) {
        Some(id) => (id, id),
        None => passwd
            .and_then(|text| passwd_entries(text).find(|e| e.name == user))
            .map(|e| (e.uid, e.gid))
            .ok_or_else(|| UserError::UserNotFound {
                user: user.to_string(),
                file: PASSWD.to_string(),
            })?,
    };
    if let Some(g) = group {
        gid = match chown_id(g) {
            Some(id) => id,
            None => groups
                .and_then(|text| group_entries(text).find(|e| e.name == g))
                .map(|e| e.gid)
                .ok_or_else(|| UserError::GroupNotFound {
                    group: g.to_string(),
                    file: GROUP.to_string(),
                })?,
        };
    }
    Ok((uid, gid))
}

/// [`resolve_chown`] against the /etc/passwd and /etc/group of `rootfs` (symlinks resolved
/// inside it); the files are read only when a name needs them.
pub fn resolve_chown_in_rootfs(
    user: &str,
    group: Option<&str>,
    rootfs: &Path,
) -> Result<(u32, u32), UserError> {
    let read = |file: &'static str| -> Result<Option<String>, UserError> {
        let path =
            crate::rootpath::resolve_in_root(rootfs, file).map_err(|source| UserError::Io {
                file: file.to_string(),
                source,
            })?;
        read_optional(&path, file)
    };
    let passwd = match chown_id(user) {
        None => read(PASSWD)?,
        Some(_) => None,
    };
    let groups = match group.map(chown_id) {
        Some(None) => read(GROUP)?,
        _ => None,
    };
    resolve_chown(user, group, passwd.as_deref(), groups.as_deref())
}

/// Like [`resolve_in_rootfs`] for a rootfs that is a stack of overlay layers
/// (top first), read without mounting it.
pub(crate) fn resolve_in_layers(
    user: &str,
    layers_top_first: &[&Path],
) -> Result<ResolvedUser, UserError> {
    let read = |file: &str| -> Result<Option<String>, UserError> {
        let io = |source| UserError::Io {
            file: file.to_string(),
            source,
        };
        match crate::rootpath::lookup_in_layers(layers_top_first, file).map_err(io)? {
            Some(p) => read_optional(&p, file),
            None => Ok(None),
        }
    };
    let passwd = read(PASSWD)?;
    let group = read(GROUP)?;
    resolve(user, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      # comment\n\
                      daemon:x:1:1::/usr/sbin:/bin/false\n\
                      app:x:1000:1000:App:/home/app:/bin/sh\n\
                      nohome:x:1001:1001::\n\
                      broken line\n";
    const GR: &str = "root:x:0:\n\
                      app:x:1000:\n\
                      extra:x:2000:daemon,app\n\
                      other:x:2001:root\n\
                      wheel:x:10: app , root\n";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PW), Some(GR))
    }

    #[test]
    fn empty_is_root_with_its_groups_and_home() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.supplementary, vec![0, 2001, 10]);
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(u.supplementary, vec![1000, 2000, 10]);
    }

    #[test]
    fn uid_resolves_to_its_entry() {
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.supplementary, vec![1000, 2000, 10]);
    }

    #[test]
    fn unknown_uid_is_allowed_with_gid_0_and_root_home() {
        let u = r("1234").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 0, "/"));
        assert_eq!(u.supplementary, vec![0]);
    }

    #[test]
    fn uid_gid_numeric_need_no_entries() {
        let u = r("1234:5").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.supplementary.as_slice()),
            (1234, 5, &[5][..])
        );
        let u = resolve("1234:5", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 5, "/"));
    }

    #[test]
    fn explicit_group_is_the_only_group() {
        let u = r("app:extra").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 2000));
        assert_eq!(u.supplementary, vec![2000]);
        let u = r("app:10").unwrap();
        assert_eq!(u.gid, 10);
    }

    #[test]
    fn unknown_name_errors_naming_user_and_file() {
        let e = r("nobody").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nobody: no matching entries in /etc/passwd"
        );
        assert!(matches!(
            resolve("app", None, None),
            Err(UserError::UserNotFound { .. })
        ));
    }

    #[test]
    fn unknown_group_name_errors() {
        let e = r("app:nogroup").unwrap_err();
        assert!(matches!(e, UserError::GroupNotFound { ref group, .. } if group == "nogroup"));
        assert!(e.to_string().contains("/etc/group"));
    }

    #[test]
    fn missing_home_defaults_to_slash() {
        assert_eq!(r("nohome").unwrap().home, "/");
    }

    #[test]
    fn invalid_specs_error() {
        for spec in [":5", "app:", "99999999999"] {
            assert!(matches!(r(spec), Err(UserError::Invalid { .. })), "{spec}");
        }
    }

    #[test]
    fn rootfs_symlinked_passwd_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/pw"), "u:x:77:88::/h:/bin/sh\n").unwrap();
        // An absolute link must resolve inside the rootfs, not to the host's /data.
        std::os::unix::fs::symlink("/data/pw", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/gr", root.join("etc/group")).unwrap();
        std::fs::write(root.join("etc/gr"), "g:x:99:u\n").unwrap();
        let u = resolve_in_rootfs("u", root).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (77, 88, "/h"));
        assert_eq!(u.supplementary, vec![88, 99]);
    }

    #[test]
    fn chown_follows_buildkit_not_run() {
        let pw = Some("root:x:0:0::/root:/bin/sh\napp:x:1000:100::/home/app:/bin/sh\n");
        let gr = Some("root:x:0:\nusers:x:100:\nstaff:x:50:app\n");
        let ch = |u: &str, g: Option<&str>| resolve_chown(u, g, pw, gr);
        // A uid alone: the gid is the same number, passwd or not.
        assert_eq!(ch("1000", None).unwrap(), (1000, 1000));
        assert_eq!(ch("4242", None).unwrap(), (4242, 4242));
        assert_eq!(ch("1000", Some("7")).unwrap(), (1000, 7));
        // A name: its uid and primary gid from /etc/passwd.
        assert_eq!(ch("app", None).unwrap(), (1000, 100));
        assert_eq!(ch("app", Some("staff")).unwrap(), (1000, 50));
        assert_eq!(ch("app", Some("9")).unwrap(), (1000, 9));
        assert_eq!(ch("root", None).unwrap(), (0, 0));
        // `:gid`: root's uid.
        assert_eq!(ch("", Some("users")).unwrap(), (0, 100));
        assert_eq!(ch("", Some("33")).unwrap(), (0, 33));
        // `uid:`: an empty group is gid 0, as BuildKit reads it.
        assert_eq!(ch("1000", Some("")).unwrap(), (1000, 0));
        // Unknown names are errors naming the file.
        assert_eq!(
            ch("nobody", None).unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in /etc/passwd"
        );
        assert_eq!(
            ch("app", Some("wheel")).unwrap_err().to_string(),
            "unable to find group wheel: no matching entries in /etc/group"
        );
        assert!(resolve_chown("app", None, None, None).is_err());
        assert!(ch("99999999999", None).is_err());
    }
}
