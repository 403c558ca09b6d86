use std::os::unix::fs::PermissionsExt as _;

use super::*;

const MIN: Duration = Duration::from_mins(1);

fn issuer() -> (tempfile::TempDir, TokenIssuer) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
    (dir, issuer)
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[test]
fn issued_tokens_name_their_key_and_verify_with_the_public_set_alone() {
    let (_dir, issuer) = issuer();
    let verifier = TokenVerifier::from_keys(issuer.key_set()).unwrap();
    let grant = JoinGrant {
        host: "web1".into(),
        names: vec!["127.4.0.9".into(), "WEB1".into(), "web1.example".into()],
        control_pin: Some("sha256/abc".into()),
    };
    let (token, claims) = issuer.issue_join(&grant, MIN).unwrap();
    assert_eq!(kid_of(&token), issuer.signing_kid());
    assert_eq!(issuer.signing_kid().len(), 16);
    let got = verifier.verify(&token, Audience::Join).unwrap();
    assert_eq!(got, claims);
    assert_eq!(got.aud, "fleet-join");
    assert_eq!(got.host.as_deref(), Some("web1"));
    assert_eq!(
        got.names,
        ["web1", "127.4.0.9", "web1.example"],
        "the host first, no repeats, the issuer's order"
    );
    assert_eq!(got.exp - got.iat, 60);
    assert_eq!(
        unverified_join_claims(&token)
            .unwrap()
            .control_pin
            .as_deref(),
        Some("sha256/abc")
    );
    let (other, other_claims) = issuer.issue_join(&grant, MIN).unwrap();
    assert_ne!(other, token);
    assert_ne!(other_claims.jti, claims.jti, "each token has its own jti");
}

#[test]
fn the_key_is_kept_and_private() {
    let (dir, issuer) = issuer();
    let path = dir.path().join("token.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = TokenIssuer::load_or_create(dir.path()).unwrap();
    assert_eq!(again.public_key_pem(), issuer.public_key_pem());
    assert_eq!(again.signing_kid(), issuer.signing_kid());
    let (token, _) = issuer.issue(Audience::Operator, "me", MIN).unwrap();
    assert!(again.verifier().verify(&token, Audience::Operator).is_ok());

    std::fs::write(&path, "garbage").unwrap();
    let err = TokenIssuer::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, AuthError::BadKey { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "garbage",
        "not regenerated"
    );
}

#[test]
fn each_kind_is_refused_where_another_belongs() {
    let (_dir, issuer) = issuer();
    let v = issuer.verifier();
    let (identity, _) = issuer.issue(Audience::Agent, "a1", MIN).unwrap();
    assert_eq!(
        v.verify(&identity, Audience::Operator),
        Err(TokenError::WrongAudience)
    );
    assert!(v.verify(&identity, Audience::Agent).is_ok());
    let (stats, _) = issuer.issue(Audience::Stats, "prometheus", MIN).unwrap();
    for aud in [Audience::Operator, Audience::Sd, Audience::Agent] {
        assert_eq!(v.verify(&stats, aud), Err(TokenError::WrongAudience));
    }
    let (operator, _) = issuer.issue(Audience::Operator, "me", MIN).unwrap();
    assert_eq!(
        v.verify(&operator, Audience::Stats),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn a_scoped_stats_token_is_for_its_one_agent() {
    let (_dir, issuer) = issuer();
    let v = issuer.verifier();
    let (token, claims) = issuer
        .issue_stats_for("ag-1", "fleetctl-console", MIN)
        .unwrap();
    assert_eq!(claims.aud, "fleet-stats:ag-1");
    let mine = stats_audience_for("ag-1");
    let theirs = stats_audience_for("ag-2");
    assert!(v.verify_for(&token, &["fleet-stats", &mine]).is_ok());
    assert_eq!(
        v.verify_for(&token, &["fleet-stats", &theirs]),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        v.verify(&token, Audience::Stats),
        Err(TokenError::WrongAudience),
        "a scoped token is not a fleet-wide one"
    );
}

#[test]
fn another_keys_signature_is_refused() {
    let (_a, mine) = issuer();
    let (_b, theirs) = issuer();
    let (token, _) = theirs.issue(Audience::Operator, "me", MIN).unwrap();
    assert_eq!(
        mine.verifier().verify(&token, Audience::Operator),
        Err(TokenError::UnknownKey)
    );
    // Their token relabelled with our kid: the signature does not verify.
    let (good, _) = mine.issue(Audience::Agent, "a1", MIN).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        token.split('.').nth(1).unwrap(),
        token.split('.').nth(2).unwrap()
    );
    assert_eq!(
        mine.verifier().verify(&forged, Audience::Operator),
        Err(TokenError::BadSignature)
    );
    // A key set that names their key with our kid is refused outright.
    let alias = TokenKey {
        kid: mine.signing_kid().to_owned(),
        public_key_pem: theirs.public_key_pem().to_owned(),
    };
    assert!(TokenVerifier::from_keys(&[alias]).is_err());
}

#[test]
fn a_token_without_a_kid_or_with_another_algorithm_is_refused() {
    use base64::Engine as _;
    let (_dir, issuer) = issuer();
    let (token, _) = issuer.issue(Audience::Operator, "me", MIN).unwrap();
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let body = token.split('.').nth(1).unwrap();
    let sig = token.split('.').nth(2).unwrap();
    let no_kid = format!("{}.{body}.{sig}", b64(r#"{"alg":"EdDSA","typ":"JWT"}"#));
    assert_eq!(
        issuer.verifier().verify(&no_kid, Audience::Operator),
        Err(TokenError::Malformed)
    );
    let kid = issuer.signing_kid();
    let hs = format!(
        "{}.{body}.{sig}",
        b64(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#))
    );
    assert_eq!(
        issuer.verifier().verify(&hs, Audience::Operator),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn garbage_is_malformed() {
    let (_dir, issuer) = issuer();
    for junk in ["", "abc", "a.b.c", "Bearer x.y.z"] {
        assert_eq!(
            issuer.verifier().verify(junk, Audience::Agent),
            Err(TokenError::Malformed),
            "{junk:?}"
        );
    }
    assert!(TokenVerifier::from_public_pem("nope").is_err());
    assert!(unverified_join_claims("x.y.z").is_none());
}

#[test]
fn load_never_makes_a_key_only_the_control_plane_does() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        TokenIssuer::load(dir.path()),
        Err(AuthError::NoKey { .. })
    ));
    assert!(!dir.path().join("token.key").exists());
    let owner = TokenIssuer::load_or_create(dir.path()).unwrap();
    let reader = TokenIssuer::load(dir.path()).unwrap();
    assert_eq!(reader.public_key_pem(), owner.public_key_pem());
}

#[test]
fn expired_with_no_leeway() {
    let (_dir, issuer) = issuer();
    let (token, claims) = issuer
        .issue(Audience::Agent, "a1", Duration::from_secs(1))
        .unwrap();
    // Valid through its exp second; refused from the next one on.
    while unix_now() <= claims.exp {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        issuer.verifier().verify(&token, Audience::Agent),
        Err(TokenError::Expired)
    );
}

#[test]
fn a_rotation_publishes_first_signs_later_and_keeps_old_tokens_valid() {
    let (dir, before) = issuer();
    let old_kid = before.signing_kid().to_owned();
    let (old_token, _) = before.issue(Audience::Agent, "a1", MIN).unwrap();

    let life = Duration::from_hours(2);
    let rotation = TokenIssuer::rotate(dir.path(), Duration::from_secs(2), life, false).unwrap();
    assert_eq!(rotation.old_kid, old_kid);
    assert_ne!(rotation.new_kid, old_kid);
    assert_eq!(
        rotation.old_verify_until,
        Some(rotation.signs_from + 7200),
        "the old key verifies as long as a token it signed may live"
    );
    // Published at once, not signing yet.
    let during = TokenIssuer::load(dir.path()).unwrap();
    let kids: Vec<&str> = during.key_set().iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [old_kid.as_str(), rotation.new_kid.as_str()]);
    assert_eq!(during.signing_kid(), old_kid);
    assert!(matches!(
        TokenIssuer::rotate(dir.path(), Duration::from_secs(2), life, false),
        Err(AuthError::RotationUnderWay { .. })
    ));
    // An agent that learned only the set verifies tokens of both keys.
    let agent = TokenVerifier::from_keys(during.key_set()).unwrap();
    assert!(agent.verify(&old_token, Audience::Agent).is_ok());

    while unix_now() < rotation.signs_from {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(during.signing_kid(), rotation.new_kid, "takes over on time");
    let (new_token, _) = during.issue(Audience::Agent, "a1", MIN).unwrap();
    assert_eq!(kid_of(&new_token), rotation.new_kid);
    assert!(agent.verify(&new_token, Audience::Agent).is_ok());

    // Promotion moves the new key into token.key; the old private key goes.
    let old_private = std::fs::read(dir.path().join("token.key")).unwrap();
    assert_eq!(
        TokenIssuer::promote_if_due(dir.path()).unwrap(),
        Some(rotation.new_kid.clone())
    );
    assert!(!dir.path().join("token.next.key").exists());
    assert_ne!(
        std::fs::read(dir.path().join("token.key")).unwrap(),
        old_private
    );
    let after = TokenIssuer::load(dir.path()).unwrap();
    assert_eq!(after.signing_kid(), rotation.new_kid);
    assert!(after.verifier().verify(&old_token, Audience::Agent).is_ok());
    let set = std::fs::metadata(dir.path().join("token-keys.json")).unwrap();
    assert_eq!(set.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_rotation_now_dropping_the_old_key_stops_its_tokens_at_once() {
    let (dir, before) = issuer();
    let (old_token, _) = before.issue(Audience::Operator, "me", MIN).unwrap();
    let rotation = TokenIssuer::rotate(dir.path(), MIN, MIN, true).unwrap();
    assert_eq!(rotation.old_verify_until, None);
    let after = TokenIssuer::load(dir.path()).unwrap();
    assert_eq!(after.signing_kid(), rotation.new_kid, "signs at once");
    assert_eq!(after.key_set().len(), 1);
    assert_eq!(
        after.verifier().verify(&old_token, Audience::Operator),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn retired_keys_leave_the_set_once_their_tokens_have_expired() {
    let (dir, first) = issuer();
    let first_kid = first.signing_kid().to_owned();
    TokenIssuer::rotate(dir.path(), Duration::ZERO, Duration::from_secs(1), false).unwrap();
    let kids =
        |i: &TokenIssuer| -> Vec<String> { i.key_set().iter().map(|k| k.kid.clone()).collect() };
    assert!(kids(&TokenIssuer::load(dir.path()).unwrap()).contains(&first_kid));
    std::thread::sleep(Duration::from_millis(2100));
    assert!(!kids(&TokenIssuer::load(dir.path()).unwrap()).contains(&first_kid));
}

#[test]
fn codes_are_stable() {
    assert_eq!(TokenError::Expired.code(), "token_expired");
    assert_eq!(TokenError::NotYetValid.code(), "token_not_yet_valid");
    assert_eq!(TokenError::WrongAudience.code(), "wrong_audience");
    assert_eq!(TokenError::BadSignature.code(), "bad_signature");
    assert_eq!(TokenError::UnknownKey.code(), "unknown_key");
    assert_eq!(TokenError::Revoked.code(), "token_revoked");
    assert_eq!(TokenError::TooLong.code(), "token_too_long");
    assert_eq!(TokenError::Malformed.code(), "malformed_token");
}
