//! Access control against a real SQLite store: roles, the first admin, sign-in and lockout, sessions, API
//! tokens, the last-admin guard, the audit log, and that no secret is stored, audited or printed. Time is
//! the test's clock, so expiry and lockout are exact and nothing sleeps.

mod common;

use std::time::Duration;

use common::*;
use plugwatch_access::{
    AccessConfig, AccessError, ActorKind, AuditEntry, AuditQuery, AuditResult, NewToken, Permission, Principal, Role,
};
use sha2::{Digest, Sha256};

fn token(name: &str, role: Role) -> NewToken {
    NewToken { name: name.into(), role, expires_in: None, service: false }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn roles_grant_the_documented_permissions() {
    use Permission::*;
    let table = [
        (Role::Admin, [Read, Invoke, Operate, ManageUsers, ManageServiceTokens, ReadAudit, ManageBackups].as_slice()),
        (Role::Operator, [Read, Invoke, Operate].as_slice()),
        (Role::Viewer, [Read].as_slice()),
        (Role::Invoker, [Invoke].as_slice()),
    ];
    for (role, allowed) in table {
        for p in Permission::ALL {
            assert_eq!(role.allows(p), allowed.contains(&p), "{role} × {p}");
        }
        assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
    }
    assert_eq!(Role::ALL.len(), table.len());

    let e = "root".parse::<Role>().unwrap_err();
    assert!(matches!(&e, AccessError::InvalidInput(m) if m.starts_with("role: unknown role `root`")), "{e}");
    assert!(e.to_string().contains("admin, operator, viewer or invoker"));

    // The ceiling on the roles of tokens a principal creates.
    assert!(Role::ALL.iter().all(|&r| Role::Admin.includes(r)));
    assert!(Role::Operator.includes(Role::Viewer) && Role::Operator.includes(Role::Invoker));
    assert!(!Role::Operator.includes(Role::Admin));
    assert!(!Role::Viewer.includes(Role::Invoker) && !Role::Invoker.includes(Role::Viewer));
    assert!(Role::ALL.iter().all(|&r| r.includes(r)));
}

#[tokio::test]
async fn bootstrap_creates_the_first_admin_once() {
    let f = fixture().await;
    let generated = f.access.bootstrap_admin(None).await.unwrap().expect("a generated password");
    assert!(generated.len() >= 20, "{generated}");
    let (admin, _) = f.access.login("admin", &generated, "127.0.0.1").await.unwrap();
    assert_eq!((admin.kind, admin.name.as_str(), admin.role), (ActorKind::User, "admin", Role::Admin));

    // A second start changes nothing, whatever it is given.
    assert_eq!(f.access.bootstrap_admin(None).await.unwrap(), None);
    assert_eq!(f.access.bootstrap_admin(Some("another-password-here")).await.unwrap(), None);
    assert!(f.access.login("admin", &generated, "127.0.0.1").await.is_ok());
    assert!(matches!(
        f.access.login("admin", "another-password-here", "127.0.0.1").await,
        Err(AccessError::InvalidCredentials)
    ));
    let users = f.access.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].username.as_str(), users[0].role, users[0].disabled), ("admin", Role::Admin, false));

    let created = f.access.audit(&AuditQuery { action: Some("user.create".into()), ..Default::default() }).await;
    let created = created.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].actor_kind, created[0].target.as_str()), (ActorKind::System, "admin"));
    assert!(!contains(&f.database_bytes(), &generated));

    // A given password is used (and must follow the policy).
    let f = fixture().await;
    assert!(matches!(
        f.access.bootstrap_admin(Some("short")).await,
        Err(AccessError::InvalidInput(m)) if m.starts_with("password")
    ));
    assert_eq!(f.access.bootstrap_admin(Some(ADMIN_PASSWORD)).await.unwrap(), None);
    assert!(f.access.login("admin", ADMIN_PASSWORD, "127.0.0.1").await.is_ok());
}

#[tokio::test]
async fn login_checks_credentials() {
    let f = fixture().await.with_users().await;
    let (alice, session) = f.access.login("alice", ALICE_PASSWORD, "192.0.2.1").await.unwrap();
    assert_eq!((alice.kind, alice.name.as_str(), alice.role), (ActorKind::User, "alice", Role::Operator));
    assert!(alice.user_id.is_some() && alice.token_id.is_none());
    assert_eq!(session.secret.len(), 43);
    assert_eq!(session.expires_at, f.clock.now() + AccessConfig::default().session_absolute);
    let (principal, csrf) = f.access.session(&session.secret).await.unwrap().unwrap();
    assert_eq!(principal, alice);
    assert_eq!(csrf, session.csrf);
    assert_ne!(session.csrf, session.secret);

    for (username, password) in
        [("alice", BOB_PASSWORD), ("alice", ""), ("nobody", ALICE_PASSWORD), ("Alice", ALICE_PASSWORD)]
    {
        let result = f.access.login(username, password, "192.0.2.2").await;
        assert!(matches!(result, Err(AccessError::InvalidCredentials)), "{username}: {result:?}");
    }

    f.access.set_disabled("bob", true).await.unwrap();
    assert!(matches!(f.access.login("bob", BOB_PASSWORD, "192.0.2.3").await, Err(AccessError::UserDisabled)));
    // A wrong password says nothing about the account's state.
    assert!(matches!(f.access.login("bob", ALICE_PASSWORD, "192.0.2.3").await, Err(AccessError::InvalidCredentials)));
}

#[tokio::test]
async fn lockout_per_username_refuses_even_the_right_password_until_it_expires() {
    let f = fixture().await.with_users().await;
    // Failures from five different addresses: only the username's count reaches the threshold.
    for i in 0..5 {
        let result = f.access.login("alice", "wrong-password-xx", &format!("198.51.100.{i}")).await;
        assert!(matches!(result, Err(AccessError::InvalidCredentials)), "{result:?}");
        f.clock.advance(Duration::from_secs(10));
    }
    let retry_after = match f.access.login("alice", ALICE_PASSWORD, "203.0.113.9").await {
        Err(AccessError::LockedOut { retry_after }) => retry_after,
        other => panic!("expected a lockout, got {other:?}"),
    };
    // Fifteen minutes after the last failure, ten seconds ago.
    assert_eq!(retry_after, 15 * MINUTE - Duration::from_secs(10));
    // Other users, even from the same addresses, are not affected.
    assert!(f.access.login("bob", BOB_PASSWORD, "198.51.100.0").await.is_ok());

    // Attempts refused during the lockout do not prolong it.
    f.clock.advance(retry_after - Duration::from_secs(1));
    assert!(matches!(
        f.access.login("alice", ALICE_PASSWORD, "203.0.113.9").await,
        Err(AccessError::LockedOut { retry_after }) if retry_after == Duration::from_secs(1)
    ));
    f.clock.advance(Duration::from_secs(1));
    assert!(f.access.login("alice", ALICE_PASSWORD, "203.0.113.9").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_attempts_gets_no_more_password_checks_than_the_threshold() {
    let f = fixture().await.with_users().await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..20 {
        let access = f.access.clone();
        attempts.spawn(async move { access.login("alice", "wrong-password-xx", &format!("198.51.100.{i}")).await });
    }
    let (mut checked, mut refused) = (0, 0);
    while let Some(result) = attempts.join_next().await {
        match result.unwrap() {
            Err(AccessError::InvalidCredentials) => checked += 1,
            Err(AccessError::LockedOut { .. }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((checked, refused), (5, 15));
}

#[tokio::test]
async fn attempts_refused_during_a_lockout_are_counted_on_one_audit_entry_per_lockout() {
    let f = fixture().await.with_users().await;
    let login_entries = || async {
        let query = AuditQuery { action: Some("login".into()), limit: 500, ..Default::default() };
        f.access.audit(&query).await.unwrap()
    };
    // Five failures lock out both the username and the address.
    for _ in 0..5 {
        assert!(matches!(
            f.access.login("alice", "wrong-password-xx", "192.0.2.20").await,
            Err(AccessError::InvalidCredentials)
        ));
    }
    // 20 attempts at the username from rotating addresses, 25 at unknown usernames from the address, 5 at
    // both: each is refused, none adds an entry of its own.
    let mut refused = 0;
    for i in 0..50 {
        let (name, source) = match i {
            0..20 => ("alice".to_owned(), format!("198.51.100.{i}")),
            20..45 => (format!("ghost-{i}"), "192.0.2.20".to_owned()),
            _ => ("alice".to_owned(), "192.0.2.20".to_owned()),
        };
        let password = if i % 2 == 0 { ALICE_PASSWORD } else { "guess-guess-guess" };
        assert!(matches!(f.access.login(&name, password, &source).await, Err(AccessError::LockedOut { .. })));
        refused += 1;
        f.clock.advance(Duration::from_secs(1));
    }
    let entries = login_entries().await;
    assert_eq!(entries.len(), 5 + 2, "five failures and one entry per lockout: {entries:#?}");
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e.result == AuditResult::Denied)
        .map(|e| (e.target.as_str(), e.source.as_deref(), e.count, e.detail.as_deref().unwrap()))
        .collect();
    assert_eq!(
        denied,
        [
            ("ghost-20", Some("192.0.2.20"), 25, "locked out (by address); `count` is the number of attempts refused"),
            ("alice", Some("198.51.100.0"), 25, "locked out (by username); `count` is the number of attempts refused"),
        ]
    );
    assert_eq!(denied.iter().map(|d| d.2).sum::<u64>(), refused);
    assert!(entries.iter().filter(|e| e.result != AuditResult::Denied).all(|e| e.count == 1));

    // The next lockout, once this one is over, gets an entry of its own.
    f.clock.advance(15 * MINUTE);
    for _ in 0..5 {
        assert!(f.access.login("alice", "wrong-password-xx", "192.0.2.21").await.is_err());
    }
    for _ in 0..3 {
        assert!(matches!(
            f.access.login("alice", ALICE_PASSWORD, "192.0.2.21").await,
            Err(AccessError::LockedOut { .. })
        ));
    }
    let entries = login_entries().await;
    assert_eq!(entries.len(), 7 + 5 + 1);
    assert_eq!((entries[0].result, entries[0].count), (AuditResult::Denied, 3));
    // Pruning forgets the lockout with its attempts, never the audit entry.
    f.clock.advance(60 * MINUTE);
    f.access.prune(f.clock.now()).await.unwrap();
    assert_eq!(login_entries().await.len(), 13);
}

#[tokio::test]
async fn lockout_per_address_covers_every_username_tried_from_it() {
    let f = fixture().await.with_users().await;
    for name in ["root", "administrator", "alice", "test", "guest"] {
        assert!(f.access.login(name, "guess-guess-guess", "192.0.2.66").await.is_err());
    }
    assert!(matches!(
        f.access.login("bob", BOB_PASSWORD, "192.0.2.66").await,
        Err(AccessError::LockedOut { retry_after }) if retry_after == 15 * MINUTE
    ));
    // The same user from elsewhere is fine.
    assert!(f.access.login("bob", BOB_PASSWORD, "192.0.2.67").await.is_ok());
    // A success does not reset an address's count.
    assert!(f.access.login("bob", BOB_PASSWORD, "192.0.2.66").await.is_err());
    f.clock.advance(15 * MINUTE);
    assert!(f.access.login("bob", BOB_PASSWORD, "192.0.2.66").await.is_ok());
}

#[tokio::test]
async fn only_failures_close_together_lock_out_and_a_success_resets_the_username() {
    let f = fixture().await.with_users().await;
    // Five failures, but spread over more than the window.
    for i in 0..5 {
        assert!(f.access.login("alice", "wrong-password-xx", &format!("198.51.100.{i}")).await.is_err());
        f.clock.advance(2 * MINUTE);
    }
    assert!(f.access.login("alice", ALICE_PASSWORD, "203.0.113.1").await.is_ok());

    // Four failures, a success, four more: the success started the count again.
    for i in 0..4 {
        assert!(f.access.login("bob", "wrong-password-xx", &format!("198.51.100.{}", 10 + i)).await.is_err());
        f.clock.advance(Duration::from_secs(1));
    }
    assert!(f.access.login("bob", BOB_PASSWORD, "203.0.113.2").await.is_ok());
    for i in 0..4 {
        f.clock.advance(Duration::from_secs(1));
        assert!(f.access.login("bob", "wrong-password-xx", &format!("198.51.100.{}", 20 + i)).await.is_err());
    }
    assert!(f.access.login("bob", BOB_PASSWORD, "203.0.113.2").await.is_ok());

    // Lockout can be turned off.
    let f = fixture_with(AccessConfig { lockout_threshold: 0, ..Default::default() }).await.with_users().await;
    for _ in 0..10 {
        assert!(matches!(
            f.access.login("alice", "wrong-password-xx", "192.0.2.1").await,
            Err(AccessError::InvalidCredentials)
        ));
    }
    assert!(f.access.login("alice", ALICE_PASSWORD, "192.0.2.1").await.is_ok());
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_absolute_limit_and_on_logout() {
    let f = fixture().await.with_users().await;
    let (_, s) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    // Each request moves the idle limit on.
    for _ in 0..3 {
        f.clock.advance(29 * MINUTE);
        assert!(f.access.session(&s.secret).await.unwrap().is_some());
    }
    f.clock.advance(30 * MINUTE);
    assert_eq!(f.access.session(&s.secret).await.unwrap(), None);
    // Gone for good, not only for now.
    f.clock.advance(MINUTE);
    assert_eq!(f.access.session(&s.secret).await.unwrap(), None);

    // However active, a session ends 12 hours after sign-in.
    let (_, s) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    for _ in 0..35 {
        f.clock.advance(20 * MINUTE);
        assert!(f.access.session(&s.secret).await.unwrap().is_some());
    }
    f.clock.advance(20 * MINUTE);
    assert_eq!(f.clock.now(), s.expires_at);
    assert_eq!(f.access.session(&s.secret).await.unwrap(), None);

    let (_, s) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    f.access.logout(&s.secret).await.unwrap();
    assert_eq!(f.access.session(&s.secret).await.unwrap(), None);
    f.access.logout(&s.secret).await.unwrap();
    assert_eq!(f.access.session("not-a-session").await.unwrap(), None);
}

#[tokio::test]
async fn changing_password_or_disabling_ends_sessions_and_role_changes_apply_at_once() {
    let f = fixture().await.with_users().await;
    let (_, first) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    let (_, second) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.2").await.unwrap();
    let (_, bobs) = f.access.login("bob", BOB_PASSWORD, "127.0.0.3").await.unwrap();

    f.access.set_role("alice", Role::Viewer).await.unwrap();
    assert_eq!(f.access.session(&first.secret).await.unwrap().unwrap().0.role, Role::Viewer);

    let new_password = "alice-new-password-0";
    assert!(matches!(f.access.set_password("alice", "short").await, Err(AccessError::InvalidInput(_))));
    f.access.set_password("alice", new_password).await.unwrap();
    assert_eq!(f.access.session(&first.secret).await.unwrap(), None);
    assert_eq!(f.access.session(&second.secret).await.unwrap(), None);
    assert!(f.access.session(&bobs.secret).await.unwrap().is_some());
    assert!(f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.is_err());
    let (_, third) = f.access.login("alice", new_password, "127.0.0.1").await.unwrap();

    let disabled = f.access.set_disabled("alice", true).await.unwrap();
    assert!(disabled.disabled);
    assert_eq!(f.access.session(&third.secret).await.unwrap(), None);
    f.access.set_disabled("alice", false).await.unwrap();
    assert!(f.access.login("alice", new_password, "127.0.0.1").await.is_ok());

    assert!(
        matches!(f.access.set_password("nobody", new_password).await, Err(AccessError::UnknownUser(u)) if u == "nobody")
    );
}

#[tokio::test]
async fn a_token_is_shown_once_stored_hashed_and_usable() {
    let f = fixture().await.with_users().await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let (info, secret) = f.access.create_token(&alice, token("ci deploy", Role::Operator)).await.unwrap();
    assert!(secret.starts_with("pwt_") && secret.len() == 4 + 43, "{secret}");
    assert_eq!(info.prefix, secret[..8]);
    assert_eq!((info.name.as_str(), info.role, info.owner.as_deref()), ("ci deploy", Role::Operator, Some("alice")));
    assert_eq!(info.created_by, "alice");
    assert_eq!((info.expires_at, info.last_used_at, info.revoked_at), (None, None, None));

    // Only the secret's sha256 is stored.
    let raw = f.raw().await;
    let (hash, prefix): (String, String) = sqlx::query_as("SELECT secret_hash, prefix FROM api_tokens WHERE id = $1")
        .bind(info.id)
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(hash, sha256_hex(&secret));
    assert_eq!(prefix, info.prefix);
    assert!(!contains(&f.database_bytes(), &secret));
    assert!(!contains(&f.database_bytes(), &secret[8..]));

    let principal = f.access.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!(
        principal,
        Principal {
            kind: ActorKind::Token,
            name: "ci deploy".into(),
            role: Role::Operator,
            user_id: alice.user_id,
            token_id: Some(info.id)
        }
    );
    let used_at = f.clock.now();
    let listed = f.access.tokens(Some(&alice)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(used_at));
    // Writes of the last use are spaced out.
    f.clock.advance(Duration::from_secs(1));
    f.access.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!(f.access.tokens(Some(&alice)).await.unwrap()[0].last_used_at, Some(used_at));
    f.clock.advance(MINUTE);
    f.access.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!(f.access.tokens(Some(&alice)).await.unwrap()[0].last_used_at, Some(f.clock.now()));

    for wrong in ["", "pwt_", "garbage", &secret[..secret.len() - 1], &format!("{secret}x")] {
        assert_eq!(f.access.authenticate_token(wrong).await.unwrap(), None, "{wrong}");
    }
}

#[tokio::test]
async fn tokens_expire_and_can_be_revoked() {
    let f = fixture().await.with_users().await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let spec = NewToken { expires_in: Some(Duration::from_secs(3600)), ..token("short-lived", Role::Invoker) };
    let (info, secret) = f.access.create_token(&alice, spec).await.unwrap();
    assert_eq!(info.expires_at, Some(f.clock.now() + Duration::from_secs(3600)));
    f.clock.advance(59 * MINUTE);
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap().unwrap().role, Role::Invoker);
    f.clock.advance(MINUTE);
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap(), None);

    let zero = NewToken { expires_in: Some(Duration::ZERO), ..token("never", Role::Invoker) };
    assert!(
        matches!(f.access.create_token(&alice, zero).await, Err(AccessError::InvalidInput(m)) if m.starts_with("expires_in"))
    );
    for name in ["", "   ", "tab\there", &"x".repeat(65)] {
        assert!(matches!(
            f.access.create_token(&alice, token(name, Role::Invoker)).await,
            Err(AccessError::InvalidInput(m)) if m.starts_with("name")
        ));
    }

    let (info, secret) = f.access.create_token(&alice, token("revoke me", Role::Viewer)).await.unwrap();
    assert!(f.access.authenticate_token(&secret).await.unwrap().is_some());
    let revoked = f.access.revoke_token(&alice, info.id).await.unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked");
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap(), None);
    f.clock.advance(MINUTE);
    assert_eq!(f.access.revoke_token(&alice, info.id).await.unwrap().revoked_at, Some(revoked_at));
    assert!(matches!(f.access.revoke_token(&alice, 9999).await, Err(AccessError::UnknownToken(9999))));
}

#[tokio::test]
async fn a_remembered_token_still_expires_on_time_and_other_processes_changes_apply_within_seconds() {
    let f = fixture().await.with_users().await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let spec = NewToken { expires_in: Some(Duration::from_secs(3600)), ..token("host app", Role::Invoker) };
    let (_, secret) = f.access.create_token(&alice, spec).await.unwrap();
    f.clock.advance(Duration::from_secs(3598));
    assert!(f.access.authenticate_token(&secret).await.unwrap().is_some());
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap(), None, "expired while remembered");

    // A second process on the same database (the `plugwatch user` command) disables the owner.
    let (_, secret) = f.access.create_token(&alice, token("host app 2", Role::Invoker)).await.unwrap();
    assert!(f.access.authenticate_token(&secret).await.unwrap().is_some());
    let clock = f.clock.clone();
    let other = plugwatch_access::Access::with_clock(f.store.clone(), AccessConfig::default(), move || clock.now());
    other.set_disabled("alice", true).await.unwrap();
    assert!(f.access.authenticate_token(&secret).await.unwrap().is_some(), "remembered for a few seconds");
    f.clock.advance(Duration::from_secs(5));
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap(), None, "looked up again after 5 s");

    // Through this process, the change applies to the next request.
    f.access.set_disabled("alice", false).await.unwrap();
    assert!(f.access.authenticate_token(&secret).await.unwrap().is_some());
    f.access.set_role("alice", Role::Viewer).await.unwrap();
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap(), None, "viewer and invoker share nothing");
}

#[tokio::test]
async fn a_token_role_is_capped_by_its_creator_and_service_tokens_are_for_admins() {
    let f = fixture().await.with_users().await;
    let admin = f.sign_in("admin", ADMIN_PASSWORD).await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let bob = f.sign_in("bob", BOB_PASSWORD).await;

    for (by, role) in [(&bob, Role::Operator), (&bob, Role::Invoker), (&alice, Role::Admin)] {
        let result = f.access.create_token(by, token("too strong", role)).await;
        assert!(matches!(&result, Err(AccessError::Forbidden(m)) if m.contains("no higher")), "{result:?}");
    }
    assert!(f.access.create_token(&bob, token("reader", Role::Viewer)).await.is_ok());

    // A token cannot mint a stronger one; it mints for its owner.
    let (_, viewer_secret) = f.access.create_token(&alice, token("viewer", Role::Viewer)).await.unwrap();
    let viewer_token = f.access.authenticate_token(&viewer_secret).await.unwrap().unwrap();
    assert!(matches!(
        f.access.create_token(&viewer_token, token("escalate", Role::Operator)).await,
        Err(AccessError::Forbidden(_))
    ));
    let (minted, _) = f.access.create_token(&viewer_token, token("minted", Role::Viewer)).await.unwrap();
    assert_eq!((minted.owner.as_deref(), minted.created_by.as_str()), (Some("alice"), "token:viewer"));

    let service = NewToken { service: true, ..token("host-app", Role::Invoker) };
    assert!(
        matches!(f.access.create_token(&alice, service.clone()).await, Err(AccessError::Forbidden(m)) if m.contains("service"))
    );
    let (info, secret) = f.access.create_token(&admin, service.clone()).await.unwrap();
    assert_eq!((info.owner, info.role), (None, Role::Invoker));
    let host = f.access.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!(
        (host.kind, host.role, host.user_id, host.token_id),
        (ActorKind::Token, Role::Invoker, None, Some(info.id))
    );
    // A service token owns no tokens, and sees only itself.
    assert!(matches!(
        f.access.create_token(&host, token("child", Role::Invoker)).await,
        Err(AccessError::Forbidden(_))
    ));
    assert_eq!(f.access.tokens(Some(&host)).await.unwrap(), vec![f.access.tokens(None).await.unwrap().pop().unwrap()]);
    // The system (no user) can make service tokens but owns none.
    assert!(f.access.create_token(&Principal::system(), service).await.is_ok());
    assert!(f.access.create_token(&Principal::system(), token("mine", Role::Viewer)).await.is_err());
}

#[tokio::test]
async fn a_user_token_follows_its_owner() {
    let f = fixture().await.with_users().await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let (_, operator) = f.access.create_token(&alice, token("operator", Role::Operator)).await.unwrap();
    let (_, viewer) = f.access.create_token(&alice, token("viewer", Role::Viewer)).await.unwrap();

    // Demoting the owner narrows its tokens; a token sharing nothing with the new role stops working.
    f.access.set_role("alice", Role::Invoker).await.unwrap();
    assert_eq!(f.access.authenticate_token(&operator).await.unwrap().unwrap().role, Role::Invoker);
    assert_eq!(f.access.authenticate_token(&viewer).await.unwrap(), None);
    f.access.set_role("alice", Role::Operator).await.unwrap();
    assert_eq!(f.access.authenticate_token(&operator).await.unwrap().unwrap().role, Role::Operator);
    assert_eq!(f.access.authenticate_token(&viewer).await.unwrap().unwrap().role, Role::Viewer);

    f.access.set_disabled("alice", true).await.unwrap();
    assert_eq!(f.access.authenticate_token(&operator).await.unwrap(), None);
    f.access.set_disabled("alice", false).await.unwrap();
    assert!(f.access.authenticate_token(&operator).await.unwrap().is_some());

    f.access.delete_user("alice").await.unwrap();
    assert_eq!(f.access.authenticate_token(&operator).await.unwrap(), None);
    let all = f.access.tokens(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|t| t.owner.as_deref() == Some("alice") && t.revoked_at == Some(f.clock.now())));
    assert!(matches!(f.access.delete_user("alice").await, Err(AccessError::UnknownUser(_))));
}

#[tokio::test]
async fn tokens_are_listed_and_revoked_by_their_owner_or_an_admin() {
    let f = fixture().await.with_users().await;
    let admin = f.sign_in("admin", ADMIN_PASSWORD).await;
    let alice = f.sign_in("alice", ALICE_PASSWORD).await;
    let bob = f.sign_in("bob", BOB_PASSWORD).await;
    let (alices, _) = f.access.create_token(&alice, token("alice's", Role::Operator)).await.unwrap();
    let (bobs, bob_secret) = f.access.create_token(&bob, token("bob's", Role::Viewer)).await.unwrap();
    let service = NewToken { service: true, ..token("service", Role::Invoker) };
    let (service, _) = f.access.create_token(&admin, service).await.unwrap();

    let names = |tokens: Vec<plugwatch_access::TokenInfo>| tokens.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(f.access.tokens(Some(&alice)).await.unwrap()), ["alice's"]);
    assert_eq!(names(f.access.tokens(Some(&bob)).await.unwrap()), ["bob's"]);
    assert_eq!(names(f.access.tokens(None).await.unwrap()), ["alice's", "bob's", "service"]);
    // A user's token lists its user's tokens.
    let bob_token = f.access.authenticate_token(&bob_secret).await.unwrap().unwrap();
    assert_eq!(names(f.access.tokens(Some(&bob_token)).await.unwrap()), ["bob's"]);

    // An operator may touch neither others' tokens nor service tokens.
    for id in [bobs.id, service.id] {
        assert!(matches!(f.access.revoke_token(&alice, id).await, Err(AccessError::Forbidden(_))));
    }
    assert!(f.access.revoke_token(&alice, alices.id).await.unwrap().revoked_at.is_some());
    // A token may revoke itself; an admin may revoke anything.
    assert!(f.access.revoke_token(&bob_token, bobs.id).await.unwrap().revoked_at.is_some());
    assert!(f.access.revoke_token(&admin, service.id).await.unwrap().revoked_at.is_some());
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted() {
    let f = fixture().await.with_users().await;
    assert!(matches!(f.access.set_role("admin", Role::Operator).await, Err(AccessError::LastAdmin)));
    assert!(matches!(f.access.set_disabled("admin", true).await, Err(AccessError::LastAdmin)));
    assert!(matches!(f.access.delete_user("admin").await, Err(AccessError::LastAdmin)));
    // Nothing changed, and a refused deletion revoked nothing either.
    let admin = f.sign_in("admin", ADMIN_PASSWORD).await;
    let (_, secret) = f.access.create_token(&admin, token("admin's", Role::Admin)).await.unwrap();
    assert!(matches!(f.access.delete_user("admin").await, Err(AccessError::LastAdmin)));
    assert_eq!(f.access.authenticate_token(&secret).await.unwrap().unwrap().role, Role::Admin);
    // Re-stating the role and enabling are no demotions.
    assert_eq!(f.access.set_role("admin", Role::Admin).await.unwrap().role, Role::Admin);
    assert!(!f.access.set_disabled("admin", false).await.unwrap().disabled);

    // With a second admin, either may go, but not both.
    f.access.set_role("alice", Role::Admin).await.unwrap();
    f.access.set_role("admin", Role::Viewer).await.unwrap();
    assert!(matches!(f.access.set_disabled("alice", true).await, Err(AccessError::LastAdmin)));
    f.access.set_role("admin", Role::Admin).await.unwrap();
    // A disabled admin does not count.
    f.access.set_disabled("admin", true).await.unwrap();
    assert!(matches!(f.access.set_role("alice", Role::Operator).await, Err(AccessError::LastAdmin)));
    assert!(matches!(f.access.delete_user("alice").await, Err(AccessError::LastAdmin)));
    f.access.delete_user("admin").await.unwrap();
    let users = f.access.users().await.unwrap();
    assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);

    assert!(matches!(f.access.set_role("nobody", Role::Viewer).await, Err(AccessError::UnknownUser(_))));
    assert!(matches!(f.access.set_disabled("nobody", true).await, Err(AccessError::UnknownUser(_))));
}

#[tokio::test]
async fn new_users_follow_the_username_and_password_policy() {
    let f = fixture().await.with_users().await;
    for name in ["", "Alice", "a b", "ünï", "semi;colon", &"a".repeat(65)] {
        let result = f.access.create_user(name, Role::Viewer, "long-enough-password").await;
        assert!(
            matches!(&result, Err(AccessError::InvalidInput(m)) if m.starts_with("username:")),
            "{name}: {result:?}"
        );
    }
    let e = f.access.create_user("carol", Role::Viewer, "elevenchars").await.unwrap_err();
    assert_eq!(e.to_string(), "invalid password: must be at least 12 characters");
    assert!(matches!(
        f.access.create_user("carol", Role::Viewer, &"x".repeat(1025)).await,
        Err(AccessError::InvalidInput(m)) if m.starts_with("password:")
    ));
    assert!(matches!(
        f.access.create_user("alice", Role::Viewer, "long-enough-password").await,
        Err(AccessError::UserExists(u)) if u == "alice"
    ));
    let carol = f.access.create_user(&"c".repeat(64), Role::Invoker, "twelve-chars").await.unwrap();
    assert_eq!((carol.role, carol.disabled), (Role::Invoker, false));
    assert_eq!(carol.created_at, f.clock.now());

    let f = fixture_with(AccessConfig { min_password_len: 20, ..Default::default() }).await;
    assert!(matches!(
        f.access.create_user("dave", Role::Viewer, "nineteen-characters").await,
        Err(AccessError::InvalidInput(m)) if m.contains("at least 20")
    ));
}

#[tokio::test]
async fn sign_ins_are_audited_without_secrets() {
    let f = fixture().await.with_users().await;
    let (_, session) = f.access.login("alice", ALICE_PASSWORD, "192.0.2.10").await.unwrap();
    let alice = f.access.session(&session.secret).await.unwrap().unwrap().0;
    let (_, token_secret) = f.access.create_token(&alice, token("t", Role::Viewer)).await.unwrap();
    assert!(f.access.login("alice", BOB_PASSWORD, "192.0.2.11").await.is_err());
    assert!(f.access.login("ghost", ALICE_PASSWORD, "192.0.2.12").await.is_err());
    for _ in 0..5 {
        assert!(f.access.login("bob", ADMIN_PASSWORD, "192.0.2.13").await.is_err());
    }
    assert!(matches!(f.access.login("bob", BOB_PASSWORD, "192.0.2.13").await, Err(AccessError::LockedOut { .. })));
    f.access.create_user("erin", Role::Viewer, "erin-password-cdef").await.unwrap();
    f.access.set_disabled("erin", true).await.unwrap();
    assert!(matches!(f.access.login("erin", "erin-password-cdef", "192.0.2.14").await, Err(AccessError::UserDisabled)));

    let entries = f.access.audit(&AuditQuery { action: Some("login".into()), ..Default::default() }).await.unwrap();
    let summary: Vec<_> = entries
        .iter()
        .rev()
        .map(|e| (e.actor_kind, e.actor.as_str(), e.target.as_str(), e.result, e.detail.as_deref().unwrap_or("")))
        .collect();
    use ActorKind::{Anonymous, User};
    use AuditResult::{Denied, Failed, Ok};
    assert_eq!(
        summary,
        [
            (User, "alice", "alice", Ok, ""),
            (Anonymous, "", "alice", Failed, "wrong password"),
            (Anonymous, "", "ghost", Failed, "unknown user"),
            (Anonymous, "", "bob", Failed, "wrong password"),
            (Anonymous, "", "bob", Failed, "wrong password"),
            (Anonymous, "", "bob", Failed, "wrong password"),
            (Anonymous, "", "bob", Failed, "wrong password"),
            (Anonymous, "", "bob", Failed, "wrong password; locked out for 900 s"),
            (Anonymous, "", "bob", Denied, "locked out (by username); `count` is the number of attempts refused"),
            (Anonymous, "", "erin", Denied, "user is disabled"),
        ]
    );
    assert_eq!(entries.last().unwrap().role, Some(Role::Operator));
    assert_eq!(entries.last().unwrap().source.as_deref(), Some("192.0.2.10"));

    // No secret anywhere: not in the audit log, not in any table, not in the database files.
    let secrets = [
        ALICE_PASSWORD,
        BOB_PASSWORD,
        ADMIN_PASSWORD,
        "erin-password-cdef",
        session.secret.as_str(),
        &token_secret[4..],
    ];
    let all = format!("{:?}", f.access.audit(&AuditQuery { limit: 500, ..Default::default() }).await.unwrap());
    let bytes = f.database_bytes();
    // The search finds what is there: the CSRF token is kept in clear, by design.
    assert!(contains(&bytes, &session.csrf));
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} in the audit log");
        assert!(!contains(&bytes, secret), "{secret} in the database");
    }
    // The password hashes are argon2id PHC strings.
    let raw = f.raw().await;
    let hashes: Vec<(String,)> = sqlx::query_as("SELECT password_hash FROM users").fetch_all(&raw).await.unwrap();
    assert!(hashes.iter().all(|(h,)| h.starts_with("$argon2id$v=19$")), "{hashes:?}");
}

#[tokio::test]
async fn the_audit_log_is_filtered_and_paged_newest_first() {
    let f = fixture().await;
    let start = f.clock.now();
    let actor = |name: &str| Principal {
        kind: ActorKind::User,
        name: name.into(),
        role: Role::Operator,
        user_id: Some(1),
        token_id: None,
    };
    let actions = ["plugin.upload", "plugin.delete", "user.create", "plugins.weird"];
    for i in 0..40u64 {
        let entry = AuditEntry {
            actor: if i % 5 == 4 { None } else { Some(actor(if i % 2 == 0 { "alice" } else { "bob" })) },
            action: actions[i as usize % 4].into(),
            target: format!("target-{}", i % 3),
            source: Some("10.0.0.1".into()),
            result: if i % 7 == 0 { AuditResult::Denied } else { AuditResult::Ok },
            detail: None,
        };
        f.access.record(entry).await.unwrap();
        f.clock.advance(Duration::from_secs(1));
    }
    let query = |q: AuditQuery| {
        let access = f.access.clone();
        async move { access.audit(&q).await.unwrap() }
    };

    let all = query(AuditQuery { limit: 500, ..Default::default() }).await;
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at > w[1].at));
    assert_eq!(all[0].at, start + Duration::from_secs(39));

    let by_actor = query(AuditQuery { actor: Some("alice".into()), limit: 500, ..Default::default() }).await;
    assert_eq!(by_actor.len(), 16);
    assert!(by_actor.iter().all(|e| e.actor == "alice" && e.actor_kind == ActorKind::User));
    let anonymous = all.iter().filter(|e| e.actor_kind == ActorKind::Anonymous).count();
    assert_eq!(anonymous, 8);

    let plugin = query(AuditQuery { action: Some("plugin.".into()), limit: 500, ..Default::default() }).await;
    assert_eq!(plugin.len(), 20);
    assert!(plugin.iter().all(|e| e.action.starts_with("plugin.")));
    let exact = query(AuditQuery { action: Some("user.create".into()), limit: 500, ..Default::default() }).await;
    assert_eq!(exact.len(), 10);

    let combined = AuditQuery {
        target: Some("target-0".into()),
        result: Some(AuditResult::Denied),
        limit: 500,
        ..Default::default()
    };
    let combined = query(combined).await;
    // i with i % 3 == 0 and i % 7 == 0: 0 and 21.
    assert_eq!(combined.len(), 2);

    let window = AuditQuery {
        from: Some(start + Duration::from_secs(10)),
        to: Some(start + Duration::from_secs(20)),
        limit: 500,
        ..Default::default()
    };
    let window = query(window).await;
    assert_eq!(window.len(), 10);
    assert_eq!((window[0].at, window[9].at), (start + Duration::from_secs(19), start + Duration::from_secs(10)));

    // Pages of 15 walk the whole log once.
    let mut seen = Vec::new();
    let mut before_id = None;
    loop {
        let page = query(AuditQuery { before_id, limit: 15, ..Default::default() }).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 15);
        before_id = Some(page.last().unwrap().id);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(seen, all.iter().map(|e| e.id).collect::<Vec<_>>());

    // The limit is capped at 500.
    for _ in 0..470 {
        f.access
            .record(AuditEntry {
                actor: None,
                action: "x".into(),
                target: String::new(),
                source: None,
                result: AuditResult::Failed,
                detail: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(query(AuditQuery { limit: u32::MAX, ..Default::default() }).await.len(), 500);
    assert_eq!(query(AuditQuery::default()).await.len(), 100);
}

#[tokio::test]
async fn pruning_drops_old_audit_entries_attempts_and_expired_sessions() {
    let f = fixture().await.with_users().await;
    let (_, old_session) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    assert!(f.access.login("alice", "wrong-password-xx", "127.0.0.1").await.is_err());
    f.clock.advance(Duration::from_secs(366 * 86_400));
    let (_, fresh) = f.access.login("bob", BOB_PASSWORD, "127.0.0.1").await.unwrap();

    // Old: the bootstrap and two sign-in entries, two attempts, one session.
    let pruned = f.access.prune(f.clock.now()).await.unwrap();
    assert_eq!(pruned, 3 + 2 + 1);
    let left = f.access.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].target, "bob");
    assert_eq!(f.access.session(&old_session.secret).await.unwrap(), None);
    assert!(f.access.session(&fresh.secret).await.unwrap().is_some());
    assert_eq!(f.access.prune(f.clock.now()).await.unwrap(), 0);

    // The audit log cannot be edited, only pruned.
    let raw = f.raw().await;
    let edit = sqlx::query("UPDATE audit_log SET result = 'ok'").execute(&raw).await;
    assert!(edit.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let f = fixture().await.with_users().await;
    let (principal, session) = f.access.login("alice", ALICE_PASSWORD, "127.0.0.1").await.unwrap();
    let (info, secret) = f.access.create_token(&principal, token("t", Role::Viewer)).await.unwrap();
    let record = f.store.user("alice").await.unwrap().unwrap();
    let stored_session = f.store.session(&sha256_hex(&session.secret)).await.unwrap().unwrap();
    let printed = format!(
        "{session:?} {principal:?} {info:?} {record:?} {stored_session:?} {:?} {:?} {:?}",
        f.access,
        f.access.tokens(None).await.unwrap(),
        f.access.users().await.unwrap(),
    );
    let hidden: [&str; 6] =
        [&session.secret, &session.csrf, &secret, &secret[4..], &record.password_hash, ALICE_PASSWORD];
    for hidden in hidden {
        assert!(!printed.contains(hidden), "{hidden} printed in {printed}");
    }
    assert!(printed.contains("<redacted>"));
    for error in [AccessError::InvalidCredentials, AccessError::LockedOut { retry_after: Duration::from_secs(90) }] {
        assert!(!format!("{error:?} {error}").contains(ALICE_PASSWORD));
    }
}
