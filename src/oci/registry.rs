//! A client of the OCI distribution API (`docker://HOST/REPO:TAG`): manifests and blobs read and
//! written over HTTPS (plain HTTP only for hosts named insecure), with the credentials and
//! certificates the container tools already use.
//!
//! - Credentials come from the containers auth files (`--authfile`, else the first of
//!   `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//!   `~/.config/containers/auth.json`, `~/.docker/config.json` with an entry for the registry),
//!   the entry for `HOST/REPO` before the one for `HOST`. A registry that answers with a Bearer
//!   challenge gets a token for the repository's scope (again whenever it answers 401: tokens
//!   expire); one that asks for Basic gets the credentials on every request. Credentials are
//!   sent only to the registry itself (not to an upload location on another host) and to an
//!   https token service.
//! - Certificates: the web's roots, the system's bundle, and every `*.crt` under
//!   `CERT_DIR/HOST[:PORT]/` (`/etc/containers/certs.d` and `/etc/docker/certs.d`, or
//!   `--registry-cert-dir`). TLS is always verified; an insecure host is reached over plain HTTP.
//!
//! Invariants: every blob and manifest read is hashed and compared with its digest before
//! anything uses it ([`Client::blob_to`], [`Client::manifest`]); a blob is uploaded whole in one
//! request after a `HEAD` showed the registry lacks it, and a manifest is put only after every
//! blob it names is there, so a tag never names missing content. Error messages name the
//! registry, the repository and what it answered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use sha2::Digest as _;

use super::image::Target;
use super::layout::{valid_digest, Descriptor, Layout};
use crate::description::ImageReference;
use crate::store::local::Store;

/// What a manifest request accepts: OCI and Docker manifests and lists.
pub const MANIFEST_TYPES: &[&str] = &[
    super::layout::MANIFEST_MEDIA_TYPE,
    super::layout::INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// The largest manifest or index read.
const MAX_MANIFEST: u64 = 4 << 20;

/// How registries are reached: set from the command line (or its environment variables).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Hosts (`HOST[:PORT]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Directories of `HOST[:PORT]/*.crt` certificate authorities; empty: the container tools'.
    pub cert_dirs: Vec<PathBuf>,
    /// The auth file; `None`: the first of the usual places that exists.
    pub auth_file: Option<PathBuf>,
}

/// A connection to one repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    /// `https://HOST` or `http://HOST`.
    base: String,
    host: String,
    repo: String,
    insecure: bool,
    push: bool,
    /// From the auth file.
    credentials: Option<(String, String)>,
    /// The `Authorization` header, when the registry wants one (renewed when it answers 401:
    /// tokens expire).
    authorization: RefCell<Option<String>>,
}

/// What a request sends.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A file of this many bytes.
    File(&'a Path, u64),
}

impl Client {
    /// Connect to `r`'s repository, authenticated for pulling (and pushing, with `push`).
    pub fn connect(r: &ImageReference, settings: &Settings, push: bool) -> anyhow::Result<Client> {
        let insecure = settings.insecure.contains(&r.host);
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
        if !insecure {
            builder = builder.tls_config(Arc::new(tls_config(&r.host, settings)?));
        }
        let client = Client {
            agent: builder.build(),
            base: format!("{}://{}", if insecure { "http" } else { "https" }, r.host),
            host: r.host.clone(),
            repo: r.repo.clone(),
            insecure,
            push,
            credentials: credentials(&r.host, &r.repo, settings.auth_file.as_deref())?,
            authorization: RefCell::new(None),
        };
        // The registry's challenge, if any.
        let url = format!("{}/v2/", client.base);
        match client.agent.get(&url).call() {
            Ok(_) => {}
            Err(ureq::Error::Status(401, resp)) => {
                client.authenticate(resp.header("www-authenticate").unwrap_or_default())?;
            }
            Err(ureq::Error::Status(code, resp)) => {
                bail!("registry {}: GET /v2/ answered HTTP {code} {}", r.host, resp.status_text())
            }
            Err(e) => return Err(transport(&r.host, insecure, e)),
        }
        Ok(client)
    }

    /// Answer the challenge `header` (`WWW-Authenticate`): a token from the registry's token
    /// service for this repository's scope, or the auth file's user and password.
    fn authenticate(&self, header: &str) -> anyhow::Result<()> {
        let host = &self.host;
        let (scheme, params) = parse_challenge(header);
        let basic = self
            .credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
        let authorization = if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params
                .iter()
                .find(|(k, _)| k == "realm")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow::anyhow!("registry {host}: a Bearer challenge without a realm"))?;
            if !self.insecure && !realm.starts_with("https://") {
                bail!("registry {host}: its token service `{realm}` is not https: credentials are not sent there");
            }
            let scope = format!("repository:{}:{}", self.repo, if self.push { "pull,push" } else { "pull" });
            let mut req = self.agent.get(&realm).query("scope", &scope);
            if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                req = req.query("service", service);
            }
            if let Some(b) = &basic {
                req = req.set("Authorization", b);
            }
            let resp = req.call().map_err(|e| match e {
                ureq::Error::Status(code, resp) => anyhow::anyhow!(
                    "registry {host}: the token service {realm} refused scope {scope}: HTTP {code} {}{}",
                    resp.status_text(),
                    if basic.is_none() { " (no credentials for this registry in the auth file)" } else { "" }
                ),
                e => anyhow::anyhow!("registry {host}: token service {realm}: {e}"),
            })?;
            let body: serde_json::Value = serde_json::from_reader(resp.into_reader().take(1 << 20))
                .with_context(|| format!("registry {host}: the token service's answer is not JSON"))?;
            let token = body["token"]
                .as_str()
                .or(body["access_token"].as_str())
                .ok_or_else(|| anyhow::anyhow!("registry {host}: the token service's answer has no token"))?;
            format!("Bearer {token}")
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Some(b) = basic else {
                bail!(
                    "registry {host} asks for a user name and password, and the auth file has none for it: log in with `skopeo login {host}` (or podman/docker login)"
                );
            };
            b
        } else if scheme.is_empty() {
            bail!("registry {host} refused access (HTTP 401) without saying how to authenticate");
        } else {
            bail!("registry {host}: unsupported authentication scheme `{scheme}`");
        };
        *self.authorization.borrow_mut() = Some(authorization);
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repo)
    }

    /// Send a request; a 401 is answered once (a new token, or credentials) and the request sent
    /// again. Credentials go only to the registry itself, never to another host an upload
    /// location names. `Err` is the failure to authenticate; `Ok(Err)` the request's own.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> anyhow::Result<Result<ureq::Response, ureq::Error>> {
        let same_origin = url.starts_with(&format!("{}/", self.base));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.request(method, url);
            if same_origin {
                if let Some(a) = self.authorization.borrow().as_ref() {
                    req = req.set("Authorization", a);
                }
            }
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let result = match body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
                Body::File(path, size) => req.set("Content-Length", &size.to_string()).send(fs_err::File::open(path)?),
            };
            match result {
                Err(ureq::Error::Status(401, resp)) if attempt == 1 && same_origin => {
                    self.authenticate(resp.header("www-authenticate").unwrap_or_default())?;
                }
                other => return Ok(other),
            }
        }
    }

    /// [`Client::send`], an error answer turned into a message about `what`.
    fn call(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> anyhow::Result<ureq::Response> {
        self.send(method, url, headers, body)?.map_err(|e| self.error(what, e))
    }

    /// Turn an error answer into a message naming the registry, the repository and the request.
    fn error(&self, what: &str, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Status(code, resp) => {
                let status = resp.status_text().to_string();
                let mut body = String::new();
                let _ = resp.into_reader().take(64 << 10).read_to_string(&mut body);
                let detail = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["errors"].as_array().cloned())
                    .map(|errs| {
                        errs.iter()
                            .map(|e| {
                                format!(
                                    "{}: {}",
                                    e["code"].as_str().unwrap_or("?"),
                                    e["message"].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let hint = match code {
                    401 | 403 => ": check the credentials in the auth file (`skopeo login`)",
                    _ => "",
                };
                anyhow::anyhow!("registry {}, {}: {what}: HTTP {code} {status}{detail}{hint}", self.host, self.repo)
            }
            e => anyhow::anyhow!("registry {}, {}: {what}: {e}", self.host, self.repo),
        }
    }

    /// The manifest (or index) `reference` names: its descriptor (digest computed from the bytes
    /// and, for a digest reference, checked against it) and bytes.
    pub fn manifest(&self, reference: &str) -> anyhow::Result<(Descriptor, Vec<u8>)> {
        let what = format!("manifest {reference}");
        if reference.starts_with("sha256:") {
            valid_digest(reference)?;
        }
        let accept = MANIFEST_TYPES.join(", ");
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.call(&what, "GET", &url, &[("Accept", &accept)], &Body::Empty)?;
        let media_type = resp.content_type().to_string();
        let mut bytes = vec![];
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("registry {}, {}: {what}", self.host, self.repo))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            bail!("registry {}, {}: {what} is larger than {MAX_MANIFEST} bytes", self.host, self.repo);
        }
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && digest != reference {
            bail!("registry {}, {}: {what}: the registry sent content whose digest is {digest}", self.host, self.repo);
        }
        // The media type the document itself states wins over the header.
        let stated = serde_json::from_slice::<serde_json::Value>(&bytes)
            .with_context(|| format!("registry {}, {}: {what} is not JSON", self.host, self.repo))?["mediaType"]
            .as_str()
            .map(str::to_string);
        let media_type = stated.unwrap_or(media_type);
        Ok((Descriptor { media_type, digest, size: bytes.len() as u64, annotations: Default::default() }, bytes))
    }

    /// Whether the repository has the blob (with this size).
    pub fn has_blob(&self, digest: &str, size: u64) -> anyhow::Result<bool> {
        valid_digest(digest)?;
        match self.send("HEAD", &self.url(&format!("blobs/{digest}")), &[], &Body::Empty)? {
            Ok(resp) => Ok(resp.header("content-length").and_then(|l| l.parse::<u64>().ok()).is_none_or(|l| l == size)),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(self.error(&format!("blob {digest}"), e)),
        }
    }

    /// Stream the blob `d` into `out`; fails, after reading it all, unless it matches `d`.
    pub fn blob_to(&self, d: &Descriptor, out: &mut impl Write) -> anyhow::Result<()> {
        let what = format!("blob {}", d.digest);
        valid_digest(&d.digest)?;
        let resp = self.call(&what, "GET", &self.url(&format!("blobs/{}", d.digest)), &[], &Body::Empty)?;
        let mut hash = sha2::Sha256::new();
        let mut reader = resp.into_reader().take(d.size + 1);
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = reader.read(&mut buf).with_context(|| format!("registry {}, {}: {what}", self.host, self.repo))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            len += n as u64;
        }
        let got = format!("sha256:{}", hex::encode(hash.finalize()));
        if len != d.size || got != d.digest {
            bail!(
                "registry {}, {}: {what}: the registry sent {len} bytes with digest {got}, expected {} bytes",
                self.host,
                self.repo,
                d.size
            );
        }
        Ok(())
    }

    /// Ask the registry to mount the blob `digest` from the repository `from` of the same
    /// registry; returns whether it did (otherwise nothing happened: the upload it may have
    /// begun instead is left to expire).
    pub fn mount_blob(&self, digest: &str, from: &str) -> anyhow::Result<bool> {
        valid_digest(digest)?;
        let url = format!("{}?mount={digest}&from={from}", self.url("blobs/uploads/"));
        match self.send("POST", &url, &[], &Body::Empty)? {
            Ok(resp) => Ok(resp.status() == 201),
            // A registry that does not mount, or a token without access to `from`.
            Err(ureq::Error::Status(401 | 403 | 404, _)) => Ok(false),
            Err(e) => Err(self.error(&format!("mount of blob {digest} from {from}"), e)),
        }
    }

    /// Upload `file` as the blob `digest` (one monolithic upload).
    pub fn put_blob(&self, digest: &str, size: u64, file: &Path) -> anyhow::Result<()> {
        let what = format!("upload of blob {digest}");
        valid_digest(digest)?;
        let resp = self.call(&what, "POST", &self.url("blobs/uploads/"), &[], &Body::Empty)?;
        let location = resp
            .header("location")
            .ok_or_else(|| anyhow::anyhow!("registry {}: {what}: no Location in the answer", self.host))?;
        let location =
            if location.starts_with('/') { format!("{}{location}", self.base) } else { location.to_string() };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        self.call(&what, "PUT", &url, &[("Content-Type", "application/octet-stream")], &Body::File(file, size))?;
        Ok(())
    }

    /// Put a manifest under `tag`.
    pub fn put_manifest(&self, tag: &str, media_type: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let url = self.url(&format!("manifests/{tag}"));
        self.call(&format!("manifest {tag}"), "PUT", &url, &[("Content-Type", media_type)], &Body::Bytes(bytes))?;
        Ok(())
    }
}

/// An export's destination in a registry: blobs the repository lacks are taken from the
/// store's blob cache ([`super::cache`]; a layer missing there is made into it first) and
/// uploaded; blobs the repository has are neither made nor sent.
///
/// A blob strata pushed before to another repository of the same registry is mounted from
/// there (one request, no upload) when the registry allows it; every blob the repository has
/// at the end is recorded (`oci_pushed`) for later pushes.
pub struct Push {
    client: Client,
    reference: ImageReference,
    cache: Layout,
    /// Digest -> other repositories of this registry strata pushed it to.
    elsewhere: HashMap<String, Vec<String>>,
    /// Blobs the repository has now (checked, mounted or uploaded).
    pushed: Vec<String>,
}

impl Push {
    /// Connect for pushing to `r` (a tag, not a digest); `cache` is the store's blob cache.
    pub fn new(store: &Store, cache: Layout, r: &ImageReference, settings: &Settings) -> anyhow::Result<Push> {
        if r.digest.is_some() {
            bail!("`{r}`: an export names a tag, not a digest (the digest is the manifest's own)");
        }
        let client = Client::connect(r, settings, true)?;
        let mut elsewhere: HashMap<String, Vec<String>> = HashMap::new();
        {
            let conn = store.db().sql();
            let mut stmt = conn.prepare("SELECT digest, repo FROM oci_pushed WHERE registry = ?1 AND repo != ?2")?;
            let rows =
                stmt.query_map([&r.host, &r.repo], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            for row in rows {
                let (digest, repo) = row?;
                elsewhere.entry(digest).or_default().push(repo);
            }
        }
        Ok(Push { client, reference: r.clone(), cache, elsewhere, pushed: vec![] })
    }

    /// Record the blobs the repository has now, for later pushes to other repositories.
    pub fn record(&self, store: &mut Store) -> anyhow::Result<()> {
        let tx = store.db_mut().transaction()?;
        for digest in &self.pushed {
            tx.sql().execute(
                "INSERT OR IGNORE INTO oci_pushed (registry, digest, repo) VALUES (?1, ?2, ?3)",
                rusqlite::params![self.reference.host, digest, self.reference.repo],
            )?;
        }
        tx.commit()
    }
}

impl Target for Push {
    fn name(&self) -> String {
        self.reference.to_string()
    }

    fn has_blob(&mut self, digest: &str, size: u64) -> anyhow::Result<bool> {
        let has = self.client.has_blob(digest, size)?;
        if has {
            self.pushed.push(digest.to_string());
        }
        Ok(has)
    }

    fn staging(&self) -> &Layout {
        &self.cache
    }

    fn put_blob(&mut self, digest: &str, size: u64) -> anyhow::Result<bool> {
        self.pushed.push(digest.to_string());
        for from in self.elsewhere.get(digest).into_iter().flatten() {
            if self.client.mount_blob(digest, from)? {
                return Ok(false);
            }
        }
        self.client.put_blob(digest, size, &self.cache.blob_path(digest))?;
        Ok(true)
    }

    fn tag(&mut self, tag: &str, manifest: &Descriptor) -> anyhow::Result<()> {
        let bytes = fs_err::read(self.cache.blob_path(&manifest.digest))?;
        self.client.put_manifest(tag, &manifest.media_type, &bytes)
    }
}

/// A connection failure, with a hint when plain HTTP or TLS is the likely cause.
fn transport(host: &str, insecure: bool, e: ureq::Error) -> anyhow::Error {
    let text = e.to_string();
    let hint = if insecure {
        ""
    } else if text.contains("InvalidCertificate") || text.contains("UnknownIssuer") {
        ": its certificate is not trusted (put its CA in /etc/containers/certs.d/HOST:PORT/ca.crt, or name a directory holding HOST:PORT/ca.crt with --registry-cert-dir)"
    } else if text.contains("CorruptMessage") || text.contains("InvalidContentType") {
        ": it does not speak TLS (a registry on plain HTTP must be named with --registry-insecure HOST:PORT)"
    } else {
        ""
    };
    anyhow::anyhow!("registry {host}: {text}{hint}")
}

/// `Bearer realm="…",service="…"` as (scheme, parameters).
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = vec![];
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.push((key, value.to_string()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    (scheme.to_string(), params)
}

/// The auth files to look in, the first existing one used.
fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut out = vec![];
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        out.push(p);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        out.push(d.join("containers/auth.json"));
    }
    let home = env("HOME");
    match (env("XDG_CONFIG_HOME"), &home) {
        (Some(c), _) => out.push(c.join("containers/auth.json")),
        (None, Some(h)) => out.push(h.join(".config/containers/auth.json")),
        _ => {}
    }
    if let Some(h) = home {
        out.push(h.join(".docker/config.json"));
    }
    out
}

/// The user name and password for `host`/`repo` in the auth file, if any.
fn credentials(host: &str, repo: &str, explicit: Option<&Path>) -> anyhow::Result<Option<(String, String)>> {
    for path in auth_files(explicit) {
        if !path.exists() {
            if explicit.is_some() {
                bail!("auth file `{}` does not exist", path.display());
            }
            continue;
        }
        let text = fs_err::read_to_string(&path)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("auth file `{}`: not JSON", path.display()))?;
        // Most specific first: HOST/REPO/…, HOST/REPO's parents, HOST.
        let mut keys = vec![];
        let mut scope = format!("{host}/{repo}");
        loop {
            keys.push(scope.clone());
            match scope.rsplit_once('/') {
                Some((parent, _)) => scope = parent.to_string(),
                None => break,
            }
        }
        if v.get("credsStore").is_some() || v["credHelpers"].get(host).is_some() {
            tracing::warn!(
                "auth file `{}` names a credential helper for {host}; strata does not run credential helpers (log in with `skopeo login --authfile FILE {host}` to store the credentials in a file)",
                path.display()
            );
        }
        for key in keys {
            let Some(entry) = v["auths"].get(&key) else { continue };
            let Some(auth) = entry["auth"].as_str() else { continue };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("auth file `{}`: `auths.{key}.auth` is not base64 of USER:PASSWORD", path.display())
                })?;
            let Some((user, password)) = decoded.split_once(':') else {
                bail!("auth file `{}`: `auths.{key}.auth` is not base64 of USER:PASSWORD", path.display());
            };
            return Ok(Some((user.to_string(), password.to_string())));
        }
        // No entry for this registry: the next file may have one (as podman and skopeo look).
    }
    Ok(None)
}

/// The TLS configuration for `host`: the web's roots, the system's and the host's own CAs.
fn tls_config(host: &str, settings: &Settings) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut add_file = |path: &Path, required: bool| -> anyhow::Result<()> {
        let certs = match CertificateDer::pem_file_iter(path) {
            Ok(it) => it.collect::<Result<Vec<_>, _>>(),
            Err(e) if !required => {
                tracing::debug!("{}: {e}", path.display());
                return Ok(());
            }
            Err(e) => Err(e),
        }
        .map_err(|e| anyhow::anyhow!("certificate file `{}`: {e}", path.display()))?;
        for cert in certs {
            roots.add(cert).map_err(|e| anyhow::anyhow!("certificate file `{}`: {e}", path.display()))?;
        }
        Ok(())
    };
    add_file(Path::new("/etc/ssl/certs/ca-certificates.crt"), false)?;
    let dirs = if settings.cert_dirs.is_empty() {
        vec![PathBuf::from("/etc/containers/certs.d"), PathBuf::from("/etc/docker/certs.d")]
    } else {
        settings.cert_dirs.clone()
    };
    for dir in dirs {
        let dir = dir.join(host);
        let Ok(entries) = fs_err::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        files.sort();
        for f in files {
            add_file(&f, true)?;
        }
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                ("realm".to_string(), "https://auth.example/token".to_string()),
                ("service".to_string(), "reg.example".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string())
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("Basic", "Registry Realm"));
    }

    #[test]
    fn auth_file_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        fs_err::write(
            &path,
            serde_json::json!({"auths": {
                "reg.example:5000": {"auth": enc("host:pw1")},
                "reg.example:5000/team": {"auth": enc("team:pw2")},
                "bad.example": {"auth": "%%%"},
            }})
            .to_string(),
        )
        .unwrap();
        let c = |h: &str, r: &str| credentials(h, r, Some(&path));
        assert_eq!(c("reg.example:5000", "team/os").unwrap(), Some(("team".into(), "pw2".into())));
        assert_eq!(c("reg.example:5000", "other/os").unwrap(), Some(("host".into(), "pw1".into())));
        assert_eq!(c("elsewhere.example", "os").unwrap(), None);
        assert!(c("bad.example", "os").unwrap_err().to_string().contains("auths.bad.example.auth"));
        assert!(credentials("h.example", "r", Some(&dir.path().join("none")))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}
