//! A real Dovecot IMAP server for tests and the bench: Debian's `dovecot-imapd`, run as a child
//! process on a free loopback port with its own config, a plain-text passdb, a static userdb
//! and Maildir storage, all in a temporary directory.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

pub const USER: &str = "support@example.test";
pub const PASSWORD: &str = "s3cret-imap";

pub struct Dovecot {
    pub port: u16,
    /// With [`Dovecot::start_tls`]: the implicit-TLS (imaps) port; the plain port then offers
    /// STARTTLS.
    pub tls_port: Option<u16>,
    /// With [`Dovecot::start_tls`]: the test CA that signed the server's certificate (for
    /// `localhost` and 127.0.0.1).
    pub ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    conf: PathBuf,
    child: Option<Child>,
}

impl Dovecot {
    /// Writes the config and starts Dovecot; returns once it accepts connections.
    pub fn start() -> Dovecot {
        Dovecot::start_with("")
    }

    /// Like [`Dovecot::start`], with extra lines for `dovecot.conf`.
    pub fn start_with(extra_conf: &str) -> Dovecot {
        Dovecot::launch(extra_conf, false)
    }

    /// Like [`Dovecot::start`], with TLS: a fresh test CA and server certificate (openssl),
    /// implicit TLS on `tls_port` and STARTTLS on `port`.
    pub fn start_tls() -> Dovecot {
        Dovecot::launch("", true)
    }

    fn launch(extra_conf: &str, tls: bool) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("deskgate-dovecot")
            .tempdir()
            .expect("a temporary directory");
        let port = free_port();
        let tls_port = tls.then(free_port);
        let root = dir.path();
        if tls {
            make_certificates(root);
        }
        // Dovecot's auth process runs as `dovecot` and must read the passwd file.
        chmod(root, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).expect("dovecot directories");
        }
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n"))
            .expect("the passwd file");
        chmod(&root.join("passwd"), 0o644);
        let status = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(root.join("mail"))
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown of the mail folder failed");
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, config_text(root, port, tls_port) + extra_conf)
            .expect("dovecot.conf");
        let mut dovecot = Dovecot {
            port,
            tls_port,
            ca_file: tls.then(|| root.join("ca.pem")),
            dir,
            conf,
            child: None,
        };
        dovecot.run();
        dovecot
    }

    /// Starts the server (again, after [`Dovecot::stop`]) on the same port and mail.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "dovecot already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dovecot.log"))
            .expect("dovecot.log");
        // A process group of its own, so that stopping it ends every process of this
        // instance: imap processes outlive a stopped master while their client stays.
        let child = Command::new("dovecot")
            .process_group(0)
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("dovecot starts (is dovecot-imapd installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops Dovecot (every connection drops) and starts it again on the same port and mail.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Stops the server: every connection drops and new ones are refused.
    pub fn stop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        if let Some(mut child) = self.child.take() {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            // SIGTERM lets the master stop its children and remove its pid file; whatever of
            // the instance is left after it exited (an imap process still serving its client)
            // is killed, so that every connection really drops.
            let _ = killpg(group, Signal::SIGTERM);
            let _ = child.wait();
            let _ = killpg(group, Signal::SIGKILL);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Makes Dovecot's auth process unable (or able again) to read its password database:
    /// every LOGIN meanwhile gets `NO [UNAVAILABLE] Temporary authentication failure`, as
    /// while the auth process restarts.
    pub fn set_auth_available(&self, available: bool) {
        chmod(
            &self.dir.path().join("passwd"),
            if available { 0o644 } else { 0o600 },
        );
    }

    /// A file holding the password, for deskgate's `password_file`.
    pub fn password_file(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join(format!("pw-{}", fastrand::u64(..)));
        std::fs::write(&path, format!("{password}\n")).expect("a password file");
        path
    }

    /// A `[channels.<id>]` table for deskgate pulling `folder` over plain TCP, plus `extra`
    /// lines in the imap table.
    pub fn channel_toml(
        &self,
        id: &str,
        folder: &str,
        password_file: &Path,
        extra: &str,
    ) -> String {
        self.channel_toml_at(
            id,
            folder,
            password_file,
            ("127.0.0.1", "plain", self.port),
            extra,
        )
    }

    /// Like [`Dovecot::channel_toml`], reaching the server at `(host, tls mode, port)`.
    pub fn channel_toml_at(
        &self,
        id: &str,
        folder: &str,
        password_file: &Path,
        (host, tls, port): (&str, &str, u16),
        extra: &str,
    ) -> String {
        format!(
            "[channels.{id}]\nkind = \"email\"\nmax_body_bytes = 1048576\n\n[channels.{id}.imap]\n\
             host = \"{host}\"\nport = {port}\ntls = \"{tls}\"\nuser = \"{USER}\"\n\
             password_file = \"{}\"\nfolder = \"{folder}\"\ncommand_timeout_secs = 10\n\
             backoff_min_ms = 50\nbackoff_max_ms = 1000\n{extra}\n",
            password_file.display()
        )
    }

    /// Runs `doveadm -c <conf> ARGS` and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> String {
        self.try_doveadm(args)
            .unwrap_or_else(|error| panic!("doveadm {args:?} failed: {error}"))
    }

    /// Like [`Dovecot::doveadm`], with a failure (its standard error) as a value.
    pub fn try_doveadm(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .map_err(|e| format!("doveadm runs: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Closes every IMAP connection of the test user.
    pub fn kick(&self) {
        self.doveadm(&["kick", USER]);
    }

    /// A folder's UIDVALIDITY as Dovecot reports it.
    pub fn uid_validity(&self, folder: &str) -> u32 {
        self.status_field(folder, "uidvalidity")
    }

    fn status_field(&self, folder: &str, field: &str) -> u32 {
        let out = self.doveadm(&["-f", "flow", "mailbox", "status", "-u", USER, field, folder]);
        // `flow` output: `<folder> <field>=<n>`.
        let prefix = format!("{field}=");
        out.split_whitespace()
            .find_map(|item| item.strip_prefix(prefix.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected doveadm output {out:?}"))
    }

    /// A logged-in IMAP session as the test user, over plain TCP.
    pub async fn session(&self) -> async_imap::Session<TcpStream> {
        self.try_session().await.expect("an IMAP session")
    }

    /// Like [`Dovecot::session`], with the failure as a value (the server may be restarting).
    pub async fn try_session(&self) -> Result<async_imap::Session<TcpStream>, String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect to dovecot: {e}"))?;
        let mut client = async_imap::Client::new(tcp);
        match client.read_response().await {
            Ok(Some(_)) => {}
            Ok(None) => return Err("no greeting".to_owned()),
            Err(e) => return Err(format!("greeting: {e}")),
        }
        client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| format!("login: {e}"))
    }

    /// Delivers one mail into `folder` with `doveadm save` (no IMAP connection involved).
    /// Mind that a mail appended over IMAP after it may get a lower UID (seen about once in
    /// 150 pairs with Maildir).
    pub fn save(&self, folder: &str, mail: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(["save", "-u", USER, "-m", folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("doveadm runs: {e}"))?;
        let written = child
            .stdin
            .take()
            .ok_or("doveadm's stdin")?
            .write_all(mail)
            .map_err(|e| format!("writing to doveadm save: {e}"));
        let output = child
            .wait_with_output()
            .map_err(|e| format!("doveadm save: {e}"))?;
        written?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "doveadm save failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Delivers mails into INBOX all at once (`doveadm import` of a Maildir written for it):
    /// they get consecutive UIDs and reach an IMAP client in IDLE as one change.
    pub fn import(&self, mails: &[Vec<u8>]) -> Result<(), String> {
        let source = self
            .dir
            .path()
            .join(format!("import-{}", fastrand::u64(..)));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(source.join(sub)).map_err(|e| e.to_string())?;
        }
        for (i, mail) in mails.iter().enumerate() {
            let file = source.join("new").join(format!("{i:06}.import"));
            std::fs::write(file, mail).map_err(|e| e.to_string())?;
        }
        // doveadm reads the source as the mail user.
        let status = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&source)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("chown of the import folder failed".to_owned());
        }
        let location = format!("maildir:{}", source.display());
        let imported = self.try_doveadm(&["import", "-u", USER, &location, "", "all"]);
        let _ = std::fs::remove_dir_all(&source);
        imported.map(|_| ())
    }

    /// The next UID `folder` will give, as Dovecot reports it.
    pub fn uid_next(&self, folder: &str) -> u32 {
        self.status_field(folder, "uidnext")
    }

    /// Appends mails to `folder` over IMAP, in order, on one connection.
    pub async fn append(&self, folder: &str, mails: &[Vec<u8>]) {
        let mut session = self.session().await;
        for mail in mails {
            session
                .append(folder, None, None, mail)
                .await
                .expect("APPEND");
        }
        let _ = session.logout().await;
    }

    pub async fn create_folder(&self, folder: &str) {
        let mut session = self.session().await;
        session.create(folder).await.expect("CREATE");
        let _ = session.logout().await;
    }

    /// Deletes and recreates a folder: it comes back empty with a new UIDVALIDITY.
    pub async fn recreate_folder(&self, folder: &str) {
        let mut session = self.session().await;
        session.delete(folder).await.expect("DELETE");
        session.create(folder).await.expect("CREATE");
        let _ = session.logout().await;
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1.
fn make_certificates(root: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=deskgate test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca);
    let mut request = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
    request.extend(ec);
    request.extend(["-out", "server.csr"]);
    openssl(&request);
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

fn config_text(root: &Path, port: u16, tls_port: Option<u16>) -> String {
    let ssl = match tls_port {
        Some(_) => format!(
            "ssl = yes\nssl_cert = <{0}/server.pem\nssl_key = <{0}/server.key\n",
            root.display()
        ),
        None => "ssl = no\n".to_owned(),
    };
    let tls_port = tls_port.unwrap_or(0);
    let root = root.display();
    format!(
        r#"{ssl}protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = /dev/stderr
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
# A throwaway server: no fsync per delivered mail.
mail_fsync = never
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
"#
    )
}

/// A varied test mail: plain or multipart with HTML, some with an attachment, some replies,
/// some with non-ASCII headers; `tag` keeps Message-IDs apart between runs.
pub fn sample_mail(tag: &str, i: usize) -> Vec<u8> {
    let sender = i % 97;
    let mut mail = format!(
        "From: Customer {sender} <customer{sender}@example.org>\r\n\
         To: support@example.test\r\n\
         Subject: {} question {i} from {tag}\r\n\
         Date: Mon, 23 Nov 2026 10:{:02}:{:02} +0000\r\n\
         Message-ID: <{tag}-{i}@example.org>\r\n",
        if i.is_multiple_of(5) {
            "=?UTF-8?Q?R=C3=BCckfrage?="
        } else {
            "Order"
        },
        (i / 60) % 60,
        i % 60
    );
    if i % 4 == 3 {
        mail.push_str(&format!("In-Reply-To: <{tag}-{}@example.org>\r\n", i - 1));
    }
    let text = format!("Hello, this is message {i}.\r\n").repeat(1 + i % 20);
    match i % 3 {
        0 => mail.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\n{text}"
        )),
        1 => mail.push_str(&format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b{i}\"\r\n\r\n\
             --b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --b{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{text}</p>\r\n--b{i}--\r\n"
        )),
        _ => mail.push_str(&format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n\
             --m{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --m{i}\r\nContent-Type: application/octet-stream; name=\"data{i}.bin\"\r\n\
             Content-Disposition: attachment; filename=\"data{i}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n--m{i}--\r\n"
        )),
    }
    mail.into_bytes()
}
