//! The controller's database: networks, members and join tokens in one SQLite file.
//!
//! # Durability contract
//!
//! When a method that writes returns `Ok`, the change is on disk: it survives `kill -9` of the daemon
//! and a power loss. A method that returns `Err` changed nothing. Each operation is one transaction.
//!
//! How: the database runs in WAL mode with `synchronous=FULL`, so every commit appends to the
//! write-ahead log and fsyncs it before `COMMIT` returns. (`synchronous=NORMAL` would skip that fsync: it
//! survives a crashed process but may lose the last commits on power loss, which would break "a joined
//! node keeps its address". Writes here are operator actions and joins, a few a second at most, so the
//! fsync per commit costs nothing that matters; the frequent `last_seen` updates are batched into one
//! transaction by [`Store::record_seen`].) WAL also lets readers run beside the writer without blocking.
//! Write transactions start `IMMEDIATE`, taking the write lock before reading, so the check-then-write of
//! a join cannot interleave with another writer (a second process opening the same file, say).
//!
//! The file is created `0600`: it holds no secrets (tokens are stored hashed), but it does map keys to
//! names and addresses, which is nobody else's business.
//!
//! # Schema
//!
//! Versioned with `PRAGMA user_version`: [`MIGRATIONS`] is an ordered list of SQL scripts (and steps
//! in Rust where SQL cannot say it), and opening the store applies those not yet applied, each in its
//! own transaction together with the version bump, so a crash mid-migration leaves the previous
//! version intact. A database from a newer meshd (a version beyond the list) is refused, not guessed
//! at. Times are Unix seconds (`datetime(x, 'unixepoch')` in the `sqlite3` shell reads them);
//! addresses and blocks are text in their canonical form, so the `UNIQUE` constraints on addresses
//! are a second guard behind the allocator, as `UNIQUE (network_id, name)` is behind the naming.
//!
//! # Lost or damaged files
//!
//! The store never makes a new database where there was one: an existing file that is empty, is not
//! an SQLite database, fails `PRAGMA integrity_check` or has no schema is refused
//! ([`StoreError::Damaged`]), as are a write-ahead log or shared-memory file without their database.
//! Members would otherwise be told by an empty controller that they belong to nothing. Recovery is a
//! copy made by [`backup`] (`meshd controller backup FILE`), put back while the daemon is stopped.
//!
//! # Network ids and removals
//!
//! Each network has a random 16-byte id (SQLite's `randomblob`: it must be unique, not secret) that
//! members keep. When a member is removed, the store remembers the key and the network id in
//! `removed`, so that the controller can tell that node it was removed, and a node believes only that.
//! A join with a new token clears the record.

use core::fmt;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use meshd_crypto::PublicKey;
use meshd_packet::{Ipv4Prefix, Ipv6Prefix};
use rand_core::{CryptoRng, RngCore};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::alloc::{AddressPlan, AllocError};
use super::{blocks, names};
use meshd_core::message::NetworkId;
use meshd_core::token::{
    JoinKind, JoinToken, TokenError, TokenHash, TokenId, TokenLimits, TokenPolicy, TokenString,
    from_unix_secs, unix_secs,
};

/// The database's file name inside the state directory.
pub const DB_FILE: &str = "controller.db";

/// The smallest MTU a network may have; IPv6 needs 1280 (RFC 8200), IPv4 alone 576 (RFC 791).
pub const MIN_MTU_V6: u16 = 1280;
pub const MIN_MTU_V4: u16 = 576;
/// The largest network MTU: what every path carries (`meshd_packet::mtu`).
pub const MAX_MTU: u16 = meshd_packet::mtu::MAX_MTU;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub enum Migration {
    Sql(&'static str),
    /// A step SQL cannot say (choosing names, say), run inside the migration's transaction.
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

/// The schema, one step per version: step `i` takes the database from version `i` to `i + 1`.
/// Append only; never edit a step that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    // 1: networks, members, tokens.
    Migration::Sql(
        "CREATE TABLE networks (
        id                 INTEGER PRIMARY KEY,
        name               TEXT    NOT NULL UNIQUE,
        ipv4_block         TEXT    NOT NULL,
        ipv6_block         TEXT,
        mtu                INTEGER NOT NULL,
        reserve_controller INTEGER NOT NULL,
        created            INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE members (
        id            INTEGER PRIMARY KEY,
        network_id    INTEGER NOT NULL REFERENCES networks(id),
        public_key    BLOB    NOT NULL CHECK (length(public_key) = 32),
        name          TEXT    NOT NULL,
        authorized    INTEGER NOT NULL,
        ipv4          TEXT    NOT NULL,
        ipv6          TEXT,
        created       INTEGER NOT NULL,
        last_seen     INTEGER,
        last_endpoint TEXT,
        UNIQUE (network_id, public_key),
        UNIQUE (network_id, ipv4),
        UNIQUE (network_id, ipv6)
    ) STRICT;
    CREATE TABLE tokens (
        id         BLOB    PRIMARY KEY CHECK (length(id) = 8),
        network_id INTEGER NOT NULL REFERENCES networks(id),
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        max_uses   INTEGER CHECK (max_uses > 0),
        uses_left  INTEGER CHECK (uses_left >= 0),
        expires    INTEGER,
        revoked    INTEGER NOT NULL DEFAULT 0,
        created    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tokens_by_network ON tokens (network_id);",
    ),
    // 2: ingress members, the border routers that announce the network's block.
    Migration::Sql("ALTER TABLE members ADD COLUMN ingress INTEGER NOT NULL DEFAULT 0;"),
    // 3: network ids, removal records, and members' requested names kept as labels.
    Migration::Sql(
        "ALTER TABLE networks ADD COLUMN uid BLOB CHECK (uid IS NULL OR length(uid) = 16);
        UPDATE networks SET uid = randomblob(16);
        CREATE UNIQUE INDEX networks_by_uid ON networks (uid);
        ALTER TABLE members ADD COLUMN label TEXT NOT NULL DEFAULT '';
        UPDATE members SET label = name;
        CREATE TABLE removed (
            network_uid BLOB    NOT NULL CHECK (length(network_uid) = 16),
            network     TEXT    NOT NULL,
            public_key  BLOB    NOT NULL CHECK (length(public_key) = 32),
            at          INTEGER NOT NULL,
            PRIMARY KEY (network_uid, public_key)
        ) STRICT;",
    ),
    // 4: unique DNS-safe member names (members named before chose their own, duplicates included).
    Migration::Code(rename_members_uniquely),
];

/// Why a store operation failed. Nothing was changed.
#[derive(Debug)]
pub enum StoreError {
    /// The join token was refused.
    Token(TokenError),
    /// The network has no address left, or its block is too small.
    Alloc(AllocError),
    NetworkExists(String),
    NoSuchNetwork(String),
    NoSuchMember {
        network: String,
        key: PublicKey,
    },
    NoSuchToken(TokenId),
    /// The network still has members (other than the controller's own node); `force` removes them.
    NetworkHasMembers {
        name: String,
        members: usize,
    },
    /// The database file exists but cannot be the controller's state: it is not opened, and nothing is
    /// made in its place.
    Damaged {
        path: PathBuf,
        why: String,
    },
    /// An argument that cannot be stored (an empty name, an MTU of 10); the text says which and why.
    Invalid(String),
    /// The database was written by a newer meshd.
    NewerSchema {
        found: u32,
        known: u32,
    },
    /// A stored value does not parse: the file was edited by hand or damaged.
    Corrupt(String),
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Token(e) => e.fmt(f),
            StoreError::Alloc(e) => e.fmt(f),
            StoreError::NetworkExists(name) => write!(
                f,
                "a network named {name:?} exists already; pick another name, or see it with \
                 `meshd network show {name}`"
            ),
            StoreError::NoSuchNetwork(name) => write!(
                f,
                "there is no network named {name:?}; `meshd network list` shows the ones there are"
            ),
            StoreError::NoSuchMember { network, key } => write!(
                f,
                "key {} is not a member of network {network:?}; `meshd member list` shows the \
                 members",
                key.fingerprint()
            ),
            StoreError::NoSuchToken(id) => write!(
                f,
                "there is no token with id {id}; `meshd token list` shows the tokens"
            ),
            StoreError::NetworkHasMembers { name, members } => write!(
                f,
                "network {name:?} has {members} member{}; remove them first (`meshd member \
                 remove`), or delete the network with its members (`meshd network delete {name} \
                 --force`)",
                if *members == 1 { "" } else { "s" }
            ),
            StoreError::Damaged { path, why } => write!(
                f,
                "the controller database {} {why}; meshd does not make a new one in its place, \
                 since its members would be told they belong to nothing. Stop meshd, restore the \
                 file from a backup (`meshd controller backup FILE` makes one; copy it to {} and \
                 remove any {}-wal and {}-shm beside it), and start meshd again. Only if this \
                 controller never held members, remove the file to start afresh",
                path.display(),
                path.display(),
                path.display(),
                path.display()
            ),
            StoreError::Invalid(why) => f.write_str(why),
            StoreError::NewerSchema { found, known } => write!(
                f,
                "the controller database has schema version {found}, but this meshd knows only up \
                 to {known}; run a newer meshd (the file was left untouched)"
            ),
            StoreError::Corrupt(what) => write!(
                f,
                "the controller database holds a value that does not parse ({what}); restore it \
                 from a backup"
            ),
            StoreError::Sqlite(e) => write!(f, "controller database: {e}"),
            StoreError::Io(e) => write!(f, "controller state directory: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Token(e) => Some(e),
            StoreError::Alloc(e) => Some(e),
            StoreError::Sqlite(e) => Some(e),
            StoreError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::Corrupt(inner.to_string()),
            e => StoreError::Sqlite(e),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<TokenError> for StoreError {
    fn from(e: TokenError) -> Self {
        StoreError::Token(e)
    }
}

impl From<AllocError> for StoreError {
    fn from(e: AllocError) -> Self {
        StoreError::Alloc(e)
    }
}

/// What `meshd network create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub ipv4: Ipv4Prefix,
    pub ipv6: Option<Ipv6Prefix>,
    pub mtu: u16,
    /// Keep the first usable address of each block for the controller's own node.
    pub reserve_controller: bool,
}

/// A network as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// Random, made at creation; members keep it with their membership.
    pub id: NetworkId,
    pub plan: AddressPlan,
    pub mtu: u16,
    pub created: SystemTime,
}

impl Network {
    pub fn ipv4(&self) -> Ipv4Prefix {
        self.plan.v4_block()
    }

    pub fn ipv6(&self) -> Option<Ipv6Prefix> {
        self.plan.v6_block()
    }
}

/// A member of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub network: String,
    pub public_key: PublicKey,
    /// Unique in the network and DNS-safe (`laptop`, `laptop-2`); the controller chooses it.
    pub name: String,
    /// The name the member asked for, without what could fool a terminal; for people only.
    pub label: String,
    pub authorized: bool,
    /// A border router of the network: the other members send traffic from their addresses to the
    /// rest of the Internet through it, and accept any source from it.
    pub ingress: bool,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub created: SystemTime,
    pub last_seen: Option<SystemTime>,
    pub last_endpoint: Option<SocketAddr>,
}

/// A token as `meshd token list` shows it: everything but the secret, which is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub network: String,
    /// The uses it was created with; `None`: unlimited.
    pub max_uses: Option<u32>,
    pub limits: TokenLimits,
    pub created: SystemTime,
}

/// The result of a successful join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub network: Network,
    pub member: Member,
    /// `false` when the key was a member already and nothing changed.
    pub new: bool,
}

/// A record that a key was removed from a network (and has not joined it again since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub network: String,
    pub network_id: NetworkId,
    pub public_key: PublicKey,
    pub at: SystemTime,
}

/// A member seen on the wire: when, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub public_key: PublicKey,
    pub at: SystemTime,
    /// `None` keeps the last endpoint stored.
    pub endpoint: Option<SocketAddr>,
}

/// The controller's state, open on one database file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `state_dir/controller.db` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(state_dir, MIGRATIONS)
    }

    fn open_with(state_dir: &Path, migrations: &[Migration]) -> Result<Self, StoreError> {
        fs::create_dir_all(state_dir)?;
        let path = state_dir.join(DB_FILE);
        let created = !path.exists();
        if created {
            // A log without its database is what is left when the database was deleted.
            for suffix in ["-wal", "-shm"] {
                let side = state_dir.join(format!("{DB_FILE}{suffix}"));
                if side.exists() {
                    return Err(StoreError::Damaged {
                        path: path.clone(),
                        why: format!("is missing, but {} is there", side.display()),
                    });
                }
            }
        } else {
            check_file(&path)?;
        }
        // Create the file ourselves so that it is 0600 from the first byte; SQLite gives the -wal and
        // -shm files the mode of the database file.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let damaged = |e: rusqlite::Error| match created {
            true => StoreError::Sqlite(e),
            false => StoreError::Damaged {
                path: path.clone(),
                why: format!("cannot be read ({e})"),
            },
        };
        let mut conn = Connection::open(&path).map_err(damaged)?;
        // Another process holding the write lock (an admin tool, a second daemon by mistake) makes us
        // wait a little rather than fail at once.
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(damaged)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "{} cannot use write-ahead logging (journal mode stays {mode:?}); put the state \
                 directory on a local file system",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if !created {
            check_contents(&conn, &path)?;
        }
        migrate(&mut conn, migrations)?;
        if created {
            // The new file's directory entry must reach the disk too, or a power loss right after the
            // first acknowledged write could leave no file at all.
            fs::File::open(state_dir)?.sync_all()?;
        }
        Ok(Store { conn, path })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    // ---- networks ----

    pub fn create_network(&mut self, spec: &NetworkSpec, now: SystemTime) -> Result<Network, StoreError> {
        check_network_name(&spec.name)?;
        blocks::check_v4(spec.ipv4).map_err(StoreError::Invalid)?;
        if let Some(v6) = spec.ipv6 {
            blocks::check_v6(v6).map_err(StoreError::Invalid)?;
        }
        // Refuse a block that leaves no address for members now, not at the first join.
        AddressPlan::new(spec.ipv4, spec.ipv6, spec.reserve_controller)?;
        let min_mtu = if spec.ipv6.is_some() {
            MIN_MTU_V6
        } else {
            MIN_MTU_V4
        };
        if spec.mtu < min_mtu {
            return Err(StoreError::Invalid(format!(
                "an MTU of {} is below the {min_mtu} the network's address families need",
                spec.mtu
            )));
        }
        if spec.mtu > MAX_MTU {
            return Err(StoreError::Invalid(format!(
                "an MTU of {} does not fit every path between members: a packet relayed over an IPv6 \
                 underlay of 1500 bytes carries {} bytes of headers, so the largest MTU is {MAX_MTU} \
                 (leave --mtu out for it)",
                spec.mtu,
                meshd_packet::mtu::WORST_PATH_OVERHEAD
            )));
        }
        let tx = self.write()?;
        if network_id(&tx, &spec.name)?.is_some() {
            return Err(StoreError::NetworkExists(spec.name.clone()));
        }
        check_overlaps(&tx, spec)?;
        tx.execute(
            "INSERT INTO networks (name, ipv4_block, ipv6_block, mtu, reserve_controller, created, uid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, randomblob(16))",
            params![
                spec.name,
                spec.ipv4.to_string(),
                spec.ipv6.map(|p| p.to_string()),
                spec.mtu,
                spec.reserve_controller,
                unix_secs(now),
            ],
        )?;
        let network = load_network(&tx, &spec.name)?;
        tx.commit()?;
        Ok(network)
    }

    /// Deletes a network with its tokens. Refused while it has members other than `keep` (the
    /// controller's own node) unless `force`, which removes them too and records their removal, so
    /// that they learn of it. Works on a network whose stored blocks no longer parse. Returns how many
    /// members were removed.
    pub fn delete_network(
        &mut self,
        name: &str,
        force: bool,
        keep: &PublicKey,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let Some((id, uid)) = tx
            .query_row("SELECT id, uid FROM networks WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<[u8; 16]>>(1)?))
            })
            .optional()?
        else {
            return Err(StoreError::NoSuchNetwork(name.to_owned()));
        };
        let members: Vec<[u8; 32]> = {
            let mut stmt =
                tx.prepare("SELECT public_key FROM members WHERE network_id = ?1 AND public_key != ?2")?;
            let rows = stmt.query_map(params![id, &keep.as_bytes()[..]], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !members.is_empty() && !force {
            return Err(StoreError::NetworkHasMembers {
                name: name.to_owned(),
                members: members.len(),
            });
        }
        if let Some(uid) = uid {
            for key in &members {
                tx.execute(
                    "INSERT OR REPLACE INTO removed (network_uid, network, public_key, at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![&uid[..], name, &key[..], unix_secs(now)],
                )?;
            }
        }
        tx.execute("DELETE FROM tokens WHERE network_id = ?1", [id])?;
        tx.execute("DELETE FROM members WHERE network_id = ?1", [id])?;
        tx.execute("DELETE FROM networks WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(members.len())
    }

    /// The names of every network, including any whose stored row no longer parses.
    pub fn network_names(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name FROM networks ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<Network>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {NETWORK_COLUMNS} FROM networks ORDER BY name"))?;
        let rows = stmt.query_map([], network_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn network(&self, name: &str) -> Result<Network, StoreError> {
        load_network(&self.conn, name)
    }

    // ---- tokens ----

    /// Makes a token for `network`. The returned text is the only copy of the secret: show it to the
    /// operator once. `controller` is the controller's public key, which the token carries.
    pub fn create_token(
        &mut self,
        network: &str,
        controller: &PublicKey,
        policy: TokenPolicy,
        now: SystemTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(TokenInfo, TokenString), StoreError> {
        if let Some(at) = policy.expires
            && at <= now
        {
            return Err(StoreError::Invalid(
                "the token would be expired already; give an expiry in the future".into(),
            ));
        }
        let tx = self.write()?;
        let network_id =
            network_id(&tx, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.to_owned()))?;
        let token = JoinToken::generate(*controller, rng);
        let limits = TokenLimits::new(policy);
        tx.execute(
            "INSERT INTO tokens (id, network_id, hash, max_uses, uses_left, expires, revoked, created)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, 0, ?6)",
            params![
                &token.id().as_bytes()[..],
                network_id,
                &token.hash().as_bytes()[..],
                limits.uses_left,
                limits.expires.map(unix_secs),
                unix_secs(now),
            ],
        )?;
        let info = load_token(&tx, token.id())?.0;
        tx.commit()?;
        Ok((info, token.encode()))
    }

    /// The tokens of `network`, newest first. Secrets are not stored, so none can be shown.
    pub fn tokens(&self, network: &str) -> Result<Vec<TokenInfo>, StoreError> {
        let network_id =
            network_id(&self.conn, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.to_owned()))?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens JOIN networks n ON n.id = tokens.network_id
             WHERE network_id = ?1 ORDER BY tokens.created DESC, tokens.id"
        ))?;
        let rows = stmt.query_map([network_id], |r| token_from_row(r).map(|(info, _)| info))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token; later joins with it fail with [`TokenError::Revoked`]. Members that joined
    /// with it stay. Revoking twice is not an error.
    pub fn revoke_token(&mut self, id: TokenId) -> Result<TokenInfo, StoreError> {
        let tx = self.write()?;
        let changed = tx.execute(
            "UPDATE tokens SET revoked = 1 WHERE id = ?1",
            [&id.as_bytes()[..]],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchToken(id));
        }
        let info = load_token(&tx, id)?.0;
        tx.commit()?;
        Ok(info)
    }

    // ---- joining ----

    /// Admits `public_key` to the token's network, atomically: checks the token, takes a use,
    /// assigns addresses and records the member (authorized), or changes nothing and says why.
    ///
    /// A key that is already a member gets its existing membership back, unchanged (a deauthorized
    /// member stays deauthorized), and no use is taken; the token must still be genuine, unrevoked
    /// and unexpired (see [`JoinKind::Repeat`]).
    pub fn join(
        &mut self,
        token: &str,
        public_key: &PublicKey,
        name: &str,
        now: SystemTime,
    ) -> Result<Joined, StoreError> {
        let token = JoinToken::parse(token)?;
        let tx = self.write()?;
        let Some((info, hash, network_id)) = load_token(&tx, token.id()).optional()? else {
            return Err(TokenError::Unknown.into());
        };
        if !hash.matches(&token) {
            return Err(TokenError::Unknown.into());
        }
        let network = load_network(&tx, &info.network)?;
        let existing = load_member(&tx, &network.name, public_key).optional()?;
        let kind = match existing {
            Some(_) => JoinKind::Repeat,
            None => JoinKind::First,
        };
        info.limits.admit(now, kind)?;
        if let Some(member) = existing {
            return Ok(Joined {
                network,
                member,
                new: false,
            });
        }

        let (used_v4, used_v6) = used_addresses(&tx, network_id)?;
        let ipv4 = network.plan.allocate_v4(&used_v4)?;
        let ipv6 = network.plan.allocate_v6(&used_v6)?;
        insert_member(&tx, network_id, public_key, name, ipv4, ipv6, now)?;
        // It is a member again: no longer one to tell that it was removed.
        tx.execute(
            "DELETE FROM removed WHERE network_uid = ?1 AND public_key = ?2",
            params![&network.id.0[..], &public_key.as_bytes()[..]],
        )?;
        let mut limits = info.limits;
        limits.consume();
        tx.execute(
            "UPDATE tokens SET uses_left = ?2 WHERE id = ?1",
            params![&token.id().as_bytes()[..], limits.uses_left],
        )?;
        let member = load_member(&tx, &network.name, public_key)?;
        tx.commit()?;
        Ok(Joined {
            network,
            member,
            new: true,
        })
    }

    /// Makes `public_key` (the controller's own node) a member of `network` with the addresses the
    /// network reserves for it. Calling it again with the same key returns the member unchanged.
    pub fn add_controller_member(
        &mut self,
        network: &str,
        public_key: &PublicKey,
        name: &str,
        now: SystemTime,
    ) -> Result<Member, StoreError> {
        let tx = self.write()?;
        let net = load_network(&tx, network)?;
        let Some(ipv4) = net.plan.controller_v4() else {
            return Err(StoreError::Invalid(format!(
                "network {network:?} reserves no address for the controller; let the controller's \
                 node join with a token instead"
            )));
        };
        if let Some(member) = load_member(&tx, network, public_key).optional()? {
            return Ok(member);
        }
        let holder: Option<[u8; 32]> = tx
            .query_row(
                "SELECT m.public_key FROM members m JOIN networks n ON n.id = m.network_id
                 WHERE n.name = ?1 AND m.ipv4 = ?2",
                params![network, ipv4.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(holder) = holder {
            return Err(StoreError::Invalid(format!(
                "the controller address {ipv4} of network {network:?} is held by key {}; remove \
                 that member first (`meshd member remove`)",
                PublicKey::from_bytes(holder).fingerprint()
            )));
        }
        let network_id =
            network_id(&tx, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.into()))?;
        let ipv6 = net.plan.controller_v6();
        insert_member(&tx, network_id, public_key, name, ipv4, ipv6, now)?;
        let member = load_member(&tx, network, public_key)?;
        tx.commit()?;
        Ok(member)
    }

    // ---- members ----

    /// The members of `network`, by IPv4 address.
    pub fn members(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        let network_id =
            network_id(&self.conn, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.to_owned()))?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m JOIN networks n ON n.id = m.network_id
             WHERE m.network_id = ?1"
        ))?;
        let rows = stmt.query_map([network_id], member_from_row)?;
        let mut members: Vec<Member> = rows.collect::<Result<_, _>>()?;
        // Text order would put 10.0.0.10 before 10.0.0.2.
        members.sort_by_key(|m| m.ipv4);
        Ok(members)
    }

    pub fn member(&self, network: &str, key: &PublicKey) -> Result<Member, StoreError> {
        network_id(&self.conn, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.to_owned()))?;
        load_member(&self.conn, network, key)
            .optional()?
            .ok_or_else(|| StoreError::NoSuchMember {
                network: network.to_owned(),
                key: *key,
            })
    }

    /// Authorizes (`true`) or deauthorizes (`false`) a member. A deauthorized member keeps its
    /// addresses, so authorizing it again restores it exactly.
    pub fn set_authorized(
        &mut self,
        network: &str,
        key: &PublicKey,
        authorized: bool,
    ) -> Result<Member, StoreError> {
        self.set_member_flag(network, key, MemberFlag::Authorized, authorized)
    }

    /// Makes a member an ingress of its network (`true`) or an ordinary member again (`false`).
    pub fn set_ingress(
        &mut self,
        network: &str,
        key: &PublicKey,
        ingress: bool,
    ) -> Result<Member, StoreError> {
        self.set_member_flag(network, key, MemberFlag::Ingress, ingress)
    }

    fn set_member_flag(
        &mut self,
        network: &str,
        key: &PublicKey,
        flag: MemberFlag,
        on: bool,
    ) -> Result<Member, StoreError> {
        let tx = self.write()?;
        let column = match flag {
            MemberFlag::Authorized => "authorized",
            MemberFlag::Ingress => "ingress",
        };
        let changed = tx.execute(
            &format!(
                "UPDATE members SET {column} = ?3
                 WHERE network_id = (SELECT id FROM networks WHERE name = ?1) AND public_key = ?2"
            ),
            params![network, &key.as_bytes()[..], on],
        )?;
        if changed == 0 {
            return Err(no_member(&tx, network, key)?);
        }
        let member = load_member(&tx, network, key)?;
        tx.commit()?;
        Ok(member)
    }

    /// Removes a member; its addresses become free for the next join, and the removal is recorded
    /// (see [`Store::removals`]) until the key joins again. To cut a machine off but keep its
    /// addresses, deauthorize it instead.
    pub fn remove_member(
        &mut self,
        network: &str,
        key: &PublicKey,
        now: SystemTime,
    ) -> Result<Member, StoreError> {
        let tx = self.write()?;
        let Some(member) = load_member(&tx, network, key).optional()? else {
            return Err(no_member(&tx, network, key)?);
        };
        tx.execute(
            "DELETE FROM members
             WHERE network_id = (SELECT id FROM networks WHERE name = ?1) AND public_key = ?2",
            params![network, &key.as_bytes()[..]],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO removed (network_uid, network, public_key, at)
             SELECT uid, name, ?2, ?3 FROM networks WHERE name = ?1 AND uid IS NOT NULL",
            params![network, &key.as_bytes()[..], unix_secs(now)],
        )?;
        tx.commit()?;
        Ok(member)
    }

    /// Every key removed from a network that has not joined it again, oldest first.
    pub fn removals(&self) -> Result<Vec<Removal>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT network, network_uid, public_key, at FROM removed ORDER BY at, network")?;
        let rows = stmt.query_map([], |r| {
            Ok(Removal {
                network: r.get(0)?,
                network_id: NetworkId(r.get(1)?),
                public_key: PublicKey::from_bytes(r.get(2)?),
                at: from_unix_secs(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records when (and from where) members of `network` were last seen, all in one transaction so
    /// that a thousand keepalives cost one fsync. Keys that are not members are skipped; returns how
    /// many members were updated.
    pub fn record_seen(&mut self, network: &str, sightings: &[Sighting]) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let network_id =
            network_id(&tx, network)?.ok_or_else(|| StoreError::NoSuchNetwork(network.to_owned()))?;
        let mut updated = 0;
        {
            let mut stmt = tx.prepare(
                "UPDATE members
                 SET last_seen = max(coalesce(last_seen, ?3), ?3),
                     last_endpoint = coalesce(?4, last_endpoint)
                 WHERE network_id = ?1 AND public_key = ?2",
            )?;
            for s in sightings {
                updated += stmt.execute(params![
                    network_id,
                    &s.public_key.as_bytes()[..],
                    unix_secs(s.at),
                    s.endpoint.map(|e| e.to_string()),
                ])?;
            }
        }
        tx.commit()?;
        Ok(updated)
    }

    /// A write transaction that holds the write lock from its first statement.
    fn write(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// What [`backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    pub schema_version: u32,
    pub networks: i64,
    pub members: i64,
    pub bytes: u64,
}

/// Copies `state_dir/controller.db` to `dest` with SQLite's online backup, while the daemon may be
/// running and writing: the copy is one consistent snapshot, in a single file (no write-ahead log)
/// made `0600`, checked with `PRAGMA integrity_check` and synced. `dest` must not exist.
pub fn backup(state_dir: &Path, dest: &Path) -> Result<BackupInfo, StoreError> {
    use rusqlite::OpenFlags;
    let path = state_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Invalid(format!(
            "there is no controller database at {}; is this the controller's state directory \
             (`state_dir` in its configuration)?",
            path.display()
        )));
    }
    check_file(&path)?;
    // Read-write without create: a reader of a WAL database may need to make the -shm file.
    let source = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(5))?;
    check_contents(&source, &path)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| {
            StoreError::Invalid(format!(
                "cannot create {}: {e}{}",
                dest.display(),
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (a backup never overwrites a file; give a new name)"
                } else {
                    ""
                }
            ))
        })?;
    let result = (|| {
        let mut copy = Connection::open(dest)?;
        {
            let run = rusqlite::backup::Backup::new(&source, &mut copy)?;
            run.run_to_completion(256, Duration::from_millis(5), None)?;
        }
        let mode: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(StoreError::Invalid(format!(
                "the backup keeps journal mode {mode:?}"
            )));
        }
        let check: String = copy.query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Invalid(format!(
                "the backup fails its integrity check ({check})"
            )));
        }
        let info = BackupInfo {
            schema_version: copy.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            networks: copy.query_row("SELECT count(*) FROM networks", [], |r| r.get(0))?,
            members: copy.query_row("SELECT count(*) FROM members", [], |r| r.get(0))?,
            bytes: 0,
        };
        drop(copy);
        let file = fs::File::open(dest)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(BackupInfo { bytes, ..info })
    })();
    if result.is_err() {
        // Half a backup must not be mistaken for one.
        let _ = fs::remove_file(dest);
    }
    result
}

/// The first check of an existing database file, before SQLite opens it: SQLite would take an empty
/// file for a new database, and a file of something else for a damaged one only later.
fn check_file(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let damaged = |why: String| StoreError::Damaged {
        path: path.to_owned(),
        why,
    };
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(damaged("is empty".into()));
    }
    let mut header = [0u8; 16];
    if file.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
        return Err(damaged(format!("is not an SQLite database ({len} bytes)")));
    }
    Ok(())
}

/// The second check, once open: the pages are intact and a schema is there.
fn check_contents(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |why: String| StoreError::Damaged {
        path: path.to_owned(),
        why,
    };
    let result: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(|e| damaged(format!("cannot be checked ({e})")))?;
    if result != "ok" {
        return Err(damaged(format!("fails its integrity check ({result})")));
    }
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| damaged(format!("cannot be read ({e})")))?;
    if version == 0 {
        return Err(damaged("has no schema".into()));
    }
    Ok(())
}

/// Gives every member a unique DNS-safe name, keeping what it was called as its label, in the order
/// they joined (so the first `laptop` keeps its name), then makes names unique for good.
fn rename_members_uniquely(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let rows: Vec<(i64, i64, String)> = {
        let mut stmt =
            tx.prepare("SELECT id, network_id, name FROM members ORDER BY network_id, created, id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut taken: std::collections::HashMap<i64, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (id, network_id, requested) in rows {
        let names_taken = taken.entry(network_id).or_default();
        let name = names::unique(&names::dns_name(&requested), |n| names_taken.contains(n));
        names_taken.insert(name.clone());
        tx.execute(
            "UPDATE members SET name = ?2, label = ?3 WHERE id = ?1",
            params![id, name, names::printable_label(&requested)],
        )?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX members_by_name ON members (network_id, name);")?;
    Ok(())
}

/// Adds an authorized member with the name the controller gives for `requested` (unique, DNS-safe;
/// the request kept as a printable label).
fn insert_member(
    tx: &Transaction<'_>,
    network_id: i64,
    public_key: &PublicKey,
    requested: &str,
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    now: SystemTime,
) -> Result<(), StoreError> {
    let label = names::printable_label(requested);
    let name = unique_name(tx, network_id, requested)?;
    tx.execute(
        "INSERT INTO members (network_id, public_key, name, label, authorized, ipv4, ipv6, created)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)",
        params![
            network_id,
            &public_key.as_bytes()[..],
            name,
            label,
            ipv4.to_string(),
            ipv6.map(|a| a.to_string()),
            unix_secs(now),
        ],
    )?;
    Ok(())
}

/// A name for a new member of `network_id` from the one it asked for: DNS-safe, and unique there.
fn unique_name(tx: &Transaction<'_>, network_id: i64, requested: &str) -> Result<String, StoreError> {
    let mut stmt = tx.prepare("SELECT 1 FROM members WHERE network_id = ?1 AND name = ?2")?;
    let mut failed = None;
    let name = names::unique(&names::dns_name(requested), |candidate| {
        match stmt.exists(params![network_id, candidate]) {
            Ok(taken) => taken,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(name),
    }
}

/// Refuses a new network whose blocks share addresses with another network's: two members would
/// hold the same address, and traffic would go to either. A stored block that no longer parses is
/// skipped here (that network is not served; see `ControllerService::refresh`).
fn check_overlaps(tx: &Transaction<'_>, spec: &NetworkSpec) -> Result<(), StoreError> {
    let mut stmt = tx.prepare("SELECT name, ipv4_block, ipv6_block FROM networks")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (name, v4, v6) = row?;
        let clash = |theirs: &str| {
            StoreError::Invalid(format!(
                "the block {} overlaps {theirs} of network {name:?}; members of both would hold the \
                 same addresses. Choose a block that does not overlap (`meshd network list` shows \
                 the blocks in use)",
                if theirs.contains(':') {
                    spec.ipv6.map(|p| p.to_string()).unwrap_or_default()
                } else {
                    spec.ipv4.to_string()
                },
            ))
        };
        if let Ok(theirs) = v4.parse::<Ipv4Prefix>()
            && blocks::overlap_v4(theirs, spec.ipv4)
        {
            return Err(clash(&v4));
        }
        if let (Some(ours), Some(Ok(theirs))) = (spec.ipv6, v6.as_deref().map(str::parse::<Ipv6Prefix>))
            && blocks::overlap_v6(theirs, ours)
        {
            return Err(clash(v6.as_deref().unwrap_or_default()));
        }
    }
    Ok(())
}

/// Applies the migrations the database has not seen, one transaction each.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let known = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read inside the write lock: another process may have migrated since we last looked.
        let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StoreError::NewerSchema {
                found: version,
                known,
            });
        }
        let Some(step) = migrations.get(version as usize) else {
            return Ok(());
        };
        match step {
            Migration::Sql(script) => tx.execute_batch(script)?,
            Migration::Code(step) => step(&tx)?,
        }
        // user_version lives in the database header, which is written in the same transaction.
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// Network names are for humans and the CLI's arguments, and also end up in file and interface
/// names: not blank, not absurdly long, `[A-Za-z0-9._-]` starting with a letter or digit. (Members'
/// names are chosen by the controller instead: see [`names`].)
fn check_network_name(name: &str) -> Result<(), StoreError> {
    const MAX: usize = 64;
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX || !starts_well || !name.chars().all(ok_char) {
        return Err(StoreError::Invalid(format!(
            "network name {name:?} is not usable: it must start with a letter or digit and be at \
             most {MAX} bytes of letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn network_id(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row("SELECT id FROM networks WHERE name = ?1", [name], |r| r.get(0))
        .optional()?)
}

/// The error for a member that was not found: the network, or the member in it.
fn no_member(conn: &Connection, network: &str, key: &PublicKey) -> Result<StoreError, StoreError> {
    Ok(match network_id(conn, network)? {
        None => StoreError::NoSuchNetwork(network.to_owned()),
        Some(_) => StoreError::NoSuchMember {
            network: network.to_owned(),
            key: *key,
        },
    })
}

const NETWORK_COLUMNS: &str = "name, ipv4_block, ipv6_block, mtu, reserve_controller, created, uid";

fn load_network(conn: &Connection, name: &str) -> Result<Network, StoreError> {
    conn.query_row(
        &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE name = ?1"),
        [name],
        network_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NoSuchNetwork(name.to_owned()))
}

fn network_from_row(r: &Row<'_>) -> rusqlite::Result<Network> {
    let ipv4: Ipv4Prefix = parse_col(r, 1)?;
    let ipv6: Option<Ipv6Prefix> = parse_opt_col(r, 2)?;
    let plan = AddressPlan::new(ipv4, ipv6, r.get(4)?).map_err(|e| corrupt(1, e))?;
    Ok(Network {
        name: r.get(0)?,
        id: NetworkId(r.get(6)?),
        plan,
        mtu: r.get(3)?,
        created: from_unix_secs(r.get(5)?),
    })
}

/// A yes/no column of a member that the admin API sets.
#[derive(Debug, Clone, Copy)]
enum MemberFlag {
    Authorized,
    Ingress,
}

const MEMBER_COLUMNS: &str = "n.name, m.public_key, m.name, m.authorized, m.ipv4, m.ipv6, \
                              m.created, m.last_seen, m.last_endpoint, m.ingress, m.label";

fn load_member(conn: &Connection, network: &str, key: &PublicKey) -> rusqlite::Result<Member> {
    conn.query_row(
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM members m JOIN networks n ON n.id = m.network_id
             WHERE n.name = ?1 AND m.public_key = ?2"
        ),
        params![network, &key.as_bytes()[..]],
        member_from_row,
    )
}

fn member_from_row(r: &Row<'_>) -> rusqlite::Result<Member> {
    let key: [u8; 32] = r.get(1)?;
    Ok(Member {
        network: r.get(0)?,
        public_key: PublicKey::from_bytes(key),
        name: r.get(2)?,
        label: r.get(10)?,
        authorized: r.get(3)?,
        ipv4: parse_col(r, 4)?,
        ipv6: parse_opt_col(r, 5)?,
        created: from_unix_secs(r.get(6)?),
        last_seen: r.get::<_, Option<i64>>(7)?.map(from_unix_secs),
        last_endpoint: parse_opt_col(r, 8)?,
        ingress: r.get(9)?,
    })
}

const TOKEN_COLUMNS: &str = "tokens.id, n.name, tokens.max_uses, tokens.uses_left, \
                             tokens.expires, tokens.revoked, tokens.created, tokens.hash, \
                             tokens.network_id";

fn load_token(conn: &Connection, id: TokenId) -> rusqlite::Result<(TokenInfo, TokenHash, i64)> {
    conn.query_row(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens JOIN networks n ON n.id = tokens.network_id
             WHERE tokens.id = ?1"
        ),
        [&id.as_bytes()[..]],
        |r| {
            let (info, hash) = token_from_row(r)?;
            Ok((info, hash, r.get(8)?))
        },
    )
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<(TokenInfo, TokenHash)> {
    let id: [u8; 8] = r.get(0)?;
    let hash: [u8; 32] = r.get(7)?;
    let info = TokenInfo {
        id: TokenId::from_bytes(id),
        network: r.get(1)?,
        max_uses: r.get(2)?,
        limits: TokenLimits {
            uses_left: r.get(3)?,
            expires: r.get::<_, Option<i64>>(4)?.map(from_unix_secs),
            revoked: r.get(5)?,
        },
        created: from_unix_secs(r.get(6)?),
    };
    Ok((info, TokenHash::from_bytes(hash)))
}

/// The addresses the members of a network hold.
fn used_addresses(
    conn: &Connection,
    network_id: i64,
) -> Result<(BTreeSet<Ipv4Addr>, BTreeSet<Ipv6Addr>), StoreError> {
    let mut stmt = conn.prepare("SELECT ipv4, ipv6 FROM members WHERE network_id = ?1")?;
    let mut rows = stmt.query([network_id])?;
    let (mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new());
    while let Some(r) = rows.next()? {
        v4.insert(parse_col(r, 0)?);
        if let Some(a) = parse_opt_col(r, 1)? {
            v6.insert(a);
        }
    }
    Ok((v4, v6))
}

fn parse_col<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(idx)?;
    text.parse().map_err(|e| corrupt(idx, e))
}

fn parse_opt_col<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = r.get(idx)?;
    text.map(|t| t.parse().map_err(|e| corrupt(idx, e))).transpose()
}

fn corrupt(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshd-store-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A migration that leaves a trace each time it runs, so running twice would show.
    const COUNTING: &[Migration] = &[
        Migration::Sql("CREATE TABLE runs (n INTEGER) STRICT; INSERT INTO runs VALUES (1);"),
        Migration::Sql("INSERT INTO runs VALUES (2);"),
    ];

    #[test]
    fn migrations_run_once_and_reopening_does_not_rerun_them() {
        let dir = dir("migrate-once");
        let store = Store::open_with(&dir, COUNTING).unwrap();
        assert_eq!(store.schema_version().unwrap(), 2);
        drop(store);
        let store = Store::open_with(&dir, COUNTING).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM runs"), 2);
        assert_eq!(store.schema_version().unwrap(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_later_migration_applies_to_an_older_file() {
        let dir = dir("migrate-later");
        drop(Store::open_with(&dir, &COUNTING[..1]).unwrap());
        let store = Store::open_with(&dir, COUNTING).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM runs WHERE n = 1"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM runs WHERE n = 2"), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let dir = dir("migrate-fail");
        drop(Store::open_with(&dir, &COUNTING[..1]).unwrap());
        let broken = [
            COUNTING[0],
            Migration::Sql("INSERT INTO runs VALUES (2); INSERT INTO no_such_table VALUES (1);"),
        ];
        assert!(matches!(
            Store::open_with(&dir, &broken),
            Err(StoreError::Sqlite(_))
        ));
        let store = Store::open_with(&dir, &COUNTING[..1]).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM runs"), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = dir("migrate-newer");
        drop(Store::open_with(&dir, COUNTING).unwrap());
        match Store::open_with(&dir, &COUNTING[..1]) {
            Err(StoreError::NewerSchema { found: 2, known: 1 }) => {}
            other => panic!("{other:?}"),
        }
        let store = Store::open_with(&dir, COUNTING).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM runs"), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_database_is_wal_full_sync_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir("pragmas");
        let store = Store::open(&dir).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 is FULL.
        assert_eq!(count(&store, "PRAGMA synchronous"), 2);
        assert_eq!(count(&store, "PRAGMA foreign_keys"), 1);
        let perms = fs::metadata(store.path()).unwrap().permissions();
        assert_eq!(perms.mode() & 0o777, 0o600);
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn network_names_are_checked() {
        assert!(check_network_name("lab-1.east_2").is_ok());
        for bad in ["", "-lead", "has space", "a/b", "Küche", &"x".repeat(65)] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
    }
}
