//! API tokens: creation under the role ceiling, authentication, listing and revocation.
//!
//! A token belongs to the user who made it (or whose token made it), or to no one (a service token, made by
//! an admin). Its role is no higher than its creator's, and a user's token never acts with more than its
//! owner's current role: demoting the owner narrows the token, and a token whose role and its owner's share
//! nothing stops working.

use plugwatch_store::{NewTokenRecord, TokenRecord};

use crate::secret::{random_secret, sha256, sha256_hex};
use crate::token_cache::FRESH_FOR;
use crate::{
    Access, AccessError, ActorKind, NewToken, Permission, Principal, Result, Role, TokenInfo, clip, parse_stored,
};

/// What every token secret starts with, so that a leaked one is recognisable (and scanners can find it).
const SECRET_PREFIX: &str = "pwt_";
/// Characters of the secret kept for display.
const DISPLAY_PREFIX_LEN: usize = 8;
/// The longest token name, in characters.
const MAX_NAME_LEN: usize = 64;

impl Access {
    /// Creates a token and returns it with its secret (`pwt_` and 43 base64url characters), which is shown
    /// this once: only its sha256 is stored.
    ///
    /// The role must be no higher than `by`'s own (a token cannot mint a stronger one). A service token needs
    /// the `ManageServiceTokens` permission; any other token belongs to `by`'s user.
    pub async fn create_token(&self, by: &Principal, spec: NewToken) -> Result<(TokenInfo, String)> {
        let name = spec.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(AccessError::InvalidInput(format!(
                "name: must be 1 to {MAX_NAME_LEN} characters, without control characters"
            )));
        }
        if by.kind == ActorKind::Anonymous {
            return Err(AccessError::Forbidden("sign in to create a token".into()));
        }
        if !by.role.includes(spec.role) {
            return Err(AccessError::Forbidden(format!(
                "a token's role can be no higher than its creator's: `{}` cannot create a `{}` token",
                by.role, spec.role
            )));
        }
        let owner_id = if spec.service {
            if !by.role.allows(Permission::ManageServiceTokens) {
                return Err(AccessError::Forbidden("only admins may create service tokens".into()));
            }
            None
        } else {
            Some(by.user_id.ok_or_else(|| {
                AccessError::Forbidden("only a user (or a user's token) can own a token; create a service token".into())
            })?)
        };
        let now = self.now();
        let expires_at = match spec.expires_in {
            None => None,
            Some(d) if d.is_zero() => return Err(AccessError::InvalidInput("expires_in: must be positive".into())),
            Some(d) => Some(
                now.checked_add(d)
                    .ok_or_else(|| AccessError::InvalidInput("expires_in: too far in the future".into()))?,
            ),
        };
        let secret = format!("{SECRET_PREFIX}{}", random_secret());
        let created_by = match by.kind {
            ActorKind::Token => format!("token:{}", by.name),
            _ => by.name.clone(),
        };
        let record = self
            .store
            .insert_token(&NewTokenRecord {
                name: name.to_owned(),
                owner_id,
                role: spec.role.as_str().to_owned(),
                secret_hash: sha256_hex(&secret),
                prefix: clip(&secret, DISPLAY_PREFIX_LEN).to_owned(),
                created_by,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok((token_info(record)?, secret))
    }

    /// The principal a token's secret stands for. `None` if the secret is unknown, or the token is revoked or
    /// expired, or its owner is disabled, deleted, or no longer has a role the token's role shares.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<Principal>> {
        // Anything else was not made here; no need to ask the database.
        if !secret.starts_with(SECRET_PREFIX) || secret.len() > 128 {
            return Ok(None);
        }
        let digest = sha256(secret);
        let now = self.now();
        if let Some(principal) = self.token_cache.get(&digest, now) {
            return Ok(Some(principal));
        }
        let Some(t) = self.store.token_by_secret_hash(&hex::encode(digest)).await? else { return Ok(None) };
        if t.revoked_at.is_some() || t.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let role: Role = parse_stored(&t.role, "role")?;
        let role = match (&t.owner_name, &t.owner_role) {
            // A service token.
            (None, _) => role,
            (Some(_), Some(owner_role)) if !t.owner_disabled => {
                match Role::meet(role, parse_stored(owner_role, "role")?) {
                    Some(role) => role,
                    None => return Ok(None),
                }
            }
            // The owner is disabled or gone.
            (Some(_), _) => return Ok(None),
        };
        // A remembered token is looked up again after `FRESH_FOR`, which is when its use is recorded.
        if t.last_used_at.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= FRESH_FOR) {
            self.store.touch_token(t.id, now).await?;
        }
        let principal =
            Principal { kind: ActorKind::Token, name: t.name, role, user_id: t.owner_id, token_id: Some(t.id) };
        self.token_cache.put(digest, principal.clone(), t.expires_at, now);
        Ok(Some(principal))
    }

    /// Tokens, by id, revoked ones included: every token for `None` (the caller checks that it is an admin);
    /// otherwise the principal's own, that is its user's tokens (a service token sees only itself).
    pub async fn tokens(&self, of: Option<&Principal>) -> Result<Vec<TokenInfo>> {
        let records = match of {
            None => self.store.all_tokens().await?,
            Some(Principal { user_id: Some(user), .. }) => self.store.tokens_of(*user).await?,
            Some(Principal { token_id: Some(token), .. }) => self.store.token(*token).await?.into_iter().collect(),
            Some(_) => Vec::new(),
        };
        records.into_iter().map(token_info).collect()
    }

    /// Revokes a token: `by`'s own (its user's, or itself), or, for an admin, any. Revoking a revoked token
    /// changes nothing.
    pub async fn revoke_token(&self, by: &Principal, id: i64) -> Result<TokenInfo> {
        let t = self.store.token(id).await?.ok_or(AccessError::UnknownToken(id))?;
        let own = (t.owner_id.is_some() && t.owner_id == by.user_id) || by.token_id == Some(t.id);
        let permission = if t.owner_name.is_none() { Permission::ManageServiceTokens } else { Permission::ManageUsers };
        if by.kind == ActorKind::Anonymous || !(own || by.role.allows(permission)) {
            return Err(AccessError::Forbidden(format!("token {id} is not yours to revoke")));
        }
        let t = self.store.revoke_token(id, self.now()).await?.ok_or(AccessError::UnknownToken(id))?;
        self.tokens_changed().await;
        token_info(t)
    }
}

fn token_info(t: TokenRecord) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: t.id,
        role: parse_stored(&t.role, "role")?,
        name: t.name,
        owner: t.owner_name,
        prefix: t.prefix,
        created_by: t.created_by,
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    })
}
