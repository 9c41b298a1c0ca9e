//! Roles and the permissions each one grants.

use std::fmt;
use std::str::FromStr;

use crate::AccessError;

/// What a principal may do, as far as its role goes. Every authenticated principal may also manage its own
/// tokens, whatever its role (see `Access::create_token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads, invokes, and runs plugins, alerts and backups; not users, others' or service tokens, or the
    /// audit log.
    Operator,
    /// Reads only.
    Viewer,
    /// Invokes only: what a host application's token gets.
    Invoker,
}

/// One kind of action a role may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read plugins, telemetry, the run log and metrics.
    Read,
    /// Invoke plugins and dispatch hooks.
    Invoke,
    /// Upload, enable, disable, activate, roll back and delete plugins; alerts.
    Operate,
    /// Create, change and delete users; see and revoke anyone's tokens.
    ManageUsers,
    /// Create and revoke service tokens (tokens tied to no user).
    ManageServiceTokens,
    /// Read the audit log.
    ReadAudit,
    /// Take, list, download, delete and restore backups (an archive holds every user, token hash and
    /// sealed secret, and a restore replaces them).
    ManageBackups,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Invoker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Invoker => "invoker",
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(p, Read | Invoke | Operate),
            Role::Viewer => p == Read,
            Role::Invoker => p == Invoke,
        }
    }

    /// Whether this role allows everything `other` allows: the ceiling on the role of a token a principal
    /// creates. Viewer and invoker include neither each other.
    pub fn includes(self, other: Role) -> bool {
        Permission::ALL.into_iter().all(|p| !other.allows(p) || self.allows(p))
    }

    /// The greater role both `a` and `b` include, if any: the role a token keeps when its owner's role
    /// changed after it was made.
    pub(crate) fn meet(a: Role, b: Role) -> Option<Role> {
        if b.includes(a) {
            Some(a)
        } else if a.includes(b) {
            Some(b)
        } else {
            None
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            AccessError::InvalidInput(format!("role: unknown role `{s}` (expected admin, operator, viewer or invoker)"))
        })
    }
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::Read,
        Permission::Invoke,
        Permission::Operate,
        Permission::ManageUsers,
        Permission::ManageServiceTokens,
        Permission::ReadAudit,
        Permission::ManageBackups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Invoke => "invoke",
            Permission::Operate => "operate",
            Permission::ManageUsers => "manage_users",
            Permission::ManageServiceTokens => "manage_service_tokens",
            Permission::ReadAudit => "read_audit",
            Permission::ManageBackups => "manage_backups",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
