//! Log lines never carry a secret: every event at every level, ours and the libraries', is captured while
//! secrets pass through each path, then searched. (Its own test binary: it installs the global subscriber.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use plugwatch_access::{NewToken, Role};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let f = fixture().await;
    let generated = f.access.bootstrap_admin(None).await.unwrap().unwrap();
    let (admin, session) = f.access.login("admin", &generated, "127.0.0.1").await.unwrap();
    f.access.session(&session.secret).await.unwrap().unwrap();
    f.access.create_user("alice", Role::Operator, ALICE_PASSWORD).await.unwrap();
    for _ in 0..5 {
        assert!(f.access.login("alice", BOB_PASSWORD, "192.0.2.1").await.is_err());
    }
    assert!(f.access.login("alice", ALICE_PASSWORD, "192.0.2.1").await.is_err());
    let spec = NewToken { name: "t".into(), role: Role::Viewer, expires_in: None, service: true };
    let (_, secret) = f.access.create_token(&admin, spec).await.unwrap();
    f.access.authenticate_token(&secret).await.unwrap().unwrap();
    f.access.set_password("alice", ADMIN_PASSWORD).await.unwrap();
    f.access.logout(&session.secret).await.unwrap();
    f.access.prune(f.clock.now()).await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Created the first user."), "{log}");
    assert!(log.contains("Repeated failed sign-ins: locking out."), "{log}");
    for secret in
        [&generated, &session.secret, &session.csrf, &secret[4..], ALICE_PASSWORD, BOB_PASSWORD, ADMIN_PASSWORD]
    {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}
