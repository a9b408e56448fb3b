//! Recipient credentials in SQL: tokens and OAuth clients (`tokens`), activation links
//! (`activation_links`) and federation policies (`federation_policies`).
//!
//! Secrets (tokens, client secrets, activation secrets) are 256 random bits and stored only as
//! their SHA-256. A lookup by hash reveals nothing about a secret that is not already known,
//! so it needs no constant-time comparison of its own.

use base64::Engine as _;
use sqlx::any::AnyRow;

use super::catalog_impl::token_hash;
use super::{SqlCatalog, db_err, get_i64, get_opt_i64, get_str, new_id, now_ms};
use crate::admin::ActivationLinkInfo;
use crate::{
    ActivationInfo, ActivationRequest, ActivationState, CatalogError, CredentialKind, CredentialRequest,
    FederationPolicy, Issued, IssuedActivation, IssuedToken, NewFederationPolicy, SubjectClaim,
};

/// A new secret: `prefix` and 256 random bits, URL-safe.
fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn federation_policy(row: &AnyRow) -> Result<FederationPolicy, CatalogError> {
    let stored = |what: &str, e: &dyn std::fmt::Display| CatalogError::internal(format!("stored {what}: {e}"));
    Ok(FederationPolicy {
        id: get_str(row, "id")?,
        recipient_id: get_str(row, "recipient_id")?,
        issuer: get_str(row, "issuer")?,
        audiences: serde_json::from_str(&get_str(row, "audiences")?).map_err(|e| stored("audiences", &e))?,
        subject_claim: get_str(row, "subject_claim")?.parse::<SubjectClaim>().map_err(|e| stored("claim", &e))?,
        subject: get_str(row, "subject")?,
        created_at: get_i64(row, "created_at")?,
        revoked_at: get_opt_i64(row, "revoked_at")?,
    })
}

/// Where a stored activation link stands at `now`, for a recipient whose access ends at
/// `recipient_expires`.
fn link_state(row: &AnyRow, recipient_expires: Option<i64>, now: i64) -> Result<ActivationState, CatalogError> {
    Ok(if get_opt_i64(row, "used_at")?.is_some() {
        ActivationState::Used
    } else if get_opt_i64(row, "replaced_at")?.is_some() {
        ActivationState::Withdrawn
    } else if get_i64(row, "expires_at")? <= now || recipient_expires.is_some_and(|e| e <= now) {
        ActivationState::Expired
    } else {
        ActivationState::Ready
    })
}

fn link_kind(row: &AnyRow) -> Result<CredentialKind, CatalogError> {
    CredentialKind::from_stored(Some(&get_str(row, "kind")?))
}

const LINK_COLUMNS: &str = "id, recipient_id, kind, created_at, expires_at, used_at, replaced_at";

impl SqlCatalog {
    /// The federation policies of one recipient, or of all (`None`), oldest first.
    pub(super) async fn federation_policies_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        recipient_id: Option<&str>,
    ) -> Result<Vec<FederationPolicy>, CatalogError> {
        const SELECT: &str =
            "SELECT id, recipient_id, issuer, audiences, subject_claim, subject, created_at, revoked_at
             FROM federation_policies";
        let rows = match recipient_id {
            Some(id) => {
                let sql = format!("{SELECT} WHERE recipient_id = ? ORDER BY created_at, id");
                sqlx::query(self.sql(&sql)).bind(id).fetch_all(&mut *conn).await
            }
            None => sqlx::query(self.sql(&format!("{SELECT} ORDER BY created_at, id"))).fetch_all(&mut *conn).await,
        }
        .map_err(db_err)?;
        rows.iter().map(federation_policy).collect()
    }

    /// Stores a new credential of `kind` for a recipient inside `tx` and returns its secret.
    pub(super) async fn insert_credential(
        &self,
        tx: &mut sqlx::AnyConnection,
        recipient: (&str, &str),
        kind: CredentialKind,
        expires_at: Option<i64>,
    ) -> Result<IssuedToken, CatalogError> {
        let (recipient_id, recipient_name) = recipient;
        kind.check_issuable()?;
        let token = new_secret(if kind == CredentialKind::OauthClientCredentials { "d2o_cs_" } else { "d2o_" });
        let id = new_id();
        sqlx::query(self.sql(
            "INSERT INTO tokens (id, recipient_id, token_hash, created_at, expires_at, kind) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(&id)
        .bind(recipient_id)
        .bind(token_hash(&token))
        .bind(now_ms())
        .bind(expires_at)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        Ok(IssuedToken { recipient: recipient_name.to_owned(), id, kind, token, expires_at })
    }

    /// Registers a private-key OAuth client: its public key, which is all d2o ever holds.
    pub(super) async fn insert_client_key(
        &self,
        recipient_id: &str,
        public_key: &str,
        expires_at: Option<i64>,
    ) -> Result<String, CatalogError> {
        crate::credential::check_public_key(public_key)?;
        let id = new_id();
        let inserted = sqlx::query(self.sql(
            "INSERT INTO tokens (id, recipient_id, token_hash, created_at, expires_at, kind, public_key)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&id)
        .bind(recipient_id)
        .bind(format!("key:{}", token_hash(public_key.trim())))
        .bind(now_ms())
        .bind(expires_at)
        .bind(CredentialKind::OauthPrivateKeyJwt.as_str())
        .bind(public_key.trim())
        .execute(self.pool())
        .await;
        match inserted {
            Err(e) if super::is_unique_violation(&e) => {
                Err(CatalogError::AlreadyExists { kind: "client key", name: "(this public key)".into() })
            }
            Err(e) => Err(db_err(e)),
            Ok(_) => {
                self.views.changed();
                Ok(id)
            }
        }
    }

    /// Issues a new activation link inside `tx`, withdrawing the recipient's unused ones.
    ///
    /// Concurrent issuers for one recipient take turns (on PostgreSQL by locking its row; SQLite
    /// has one writer at a time), so each withdraws the link the one before it committed and
    /// exactly one link is left usable, the one with the latest `created_at`. The lock is
    /// `FOR NO KEY UPDATE`: it does not block the key-share lock that inserting a credential
    /// for the recipient takes (a redemption), so the two cannot deadlock.
    pub(super) async fn insert_activation(
        &self,
        tx: &mut sqlx::AnyConnection,
        recipient: (&str, &str),
        request: ActivationRequest,
    ) -> Result<IssuedActivation, CatalogError> {
        request.validate()?;
        let (recipient_id, recipient_name) = recipient;
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM recipients WHERE id = $1 FOR NO KEY UPDATE")
                .bind(recipient_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        self.withdraw_activations(tx, recipient_id, now_ms()).await?;
        // Read once the turn is taken (SQLite's write lock is taken by the withdrawal), so a
        // later link never has an earlier time.
        let now = now_ms();
        let secret = new_secret("");
        let expires_at = now.saturating_add(request.lifetime_secs as i64 * 1000);
        sqlx::query(self.sql(
            "INSERT INTO activation_links (id, recipient_id, secret_hash, kind, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(new_id())
        .bind(recipient_id)
        .bind(token_hash(&secret))
        .bind(request.kind.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        Ok(IssuedActivation { recipient: recipient_name.to_owned(), secret, kind: request.kind, expires_at })
    }

    /// Makes the recipient's unused activation links unusable.
    pub(super) async fn withdraw_activations(
        &self,
        conn: &mut sqlx::AnyConnection,
        recipient_id: &str,
        now: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(self.sql(
            "UPDATE activation_links SET replaced_at = ? WHERE recipient_id = ? AND used_at IS NULL AND replaced_at IS NULL",
        ))
        .bind(now)
        .bind(recipient_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Issues what `request` asks for inside `tx`.
    pub(super) async fn issue(
        &self,
        tx: &mut sqlx::AnyConnection,
        recipient: (&str, &str),
        expires_at: Option<i64>,
        request: CredentialRequest,
    ) -> Result<Issued, CatalogError> {
        Ok(match request {
            CredentialRequest::Direct { kind } => {
                Issued::Token(self.insert_credential(tx, recipient, kind, expires_at).await?)
            }
            CredentialRequest::Activation(a) => Issued::Activation(self.insert_activation(tx, recipient, a).await?),
            CredentialRequest::None => Issued::None,
        })
    }

    /// The recipient's latest activation link, without its secret.
    ///
    /// Links issued in the same millisecond tie on `created_at`; of those, the latest is the
    /// one its successors did not withdraw (and, of a used and an unused one, the unused one:
    /// issuing withdraws only unused links), never one picked by its random id.
    pub(super) async fn latest_activation(
        &self,
        recipient_id: &str,
        recipient_expires: Option<i64>,
    ) -> Result<Option<ActivationLinkInfo>, CatalogError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM activation_links WHERE recipient_id = ?
             ORDER BY created_at DESC, CASE WHEN replaced_at IS NULL THEN 0 ELSE 1 END,
             CASE WHEN used_at IS NULL THEN 0 ELSE 1 END, id LIMIT 1"
        );
        let Some(row) =
            sqlx::query(self.sql(&sql)).bind(recipient_id).fetch_optional(self.pool()).await.map_err(db_err)?
        else {
            return Ok(None);
        };
        Ok(Some(ActivationLinkInfo {
            kind: link_kind(&row)?,
            state: link_state(&row, recipient_expires, now_ms())?,
            created_at: get_i64(&row, "created_at")?,
            expires_at: get_i64(&row, "expires_at")?,
            used_at: get_opt_i64(&row, "used_at")?,
        }))
    }

    /// The activation link with this secret and its recipient's row.
    async fn activation_link(&self, secret: &str) -> Result<(AnyRow, AnyRow), CatalogError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM activation_links WHERE secret_hash = ?");
        let link = sqlx::query(self.sql(&sql))
            .bind(token_hash(secret))
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| CatalogError::not_found("activation link", "(this link)"))?;
        let recipient = self.recipient_row_by("id", &get_str(&link, "recipient_id")?).await?;
        Ok((link, recipient))
    }

    pub(super) async fn activation_info(&self, secret: &str) -> Result<ActivationInfo, CatalogError> {
        let (link, recipient) = self.activation_link(secret).await?;
        let recipient = self.recipient_info(&recipient).await?;
        Ok(ActivationInfo {
            kind: link_kind(&link)?,
            state: link_state(&link, recipient.expires_at, now_ms())?,
            created_at: get_i64(&link, "created_at")?,
            expires_at: get_i64(&link, "expires_at")?,
            used_at: get_opt_i64(&link, "used_at")?,
            recipient,
        })
    }

    pub(super) async fn redeem(&self, secret: &str) -> Result<(ActivationInfo, IssuedToken), CatalogError> {
        let (link, recipient) = self.activation_link(secret).await?;
        let (recipient_id, name) = (get_str(&recipient, "id")?, get_str(&recipient, "name")?);
        let recipient_expires = get_opt_i64(&recipient, "expires_at")?;
        let now = now_ms();
        let state = link_state(&link, recipient_expires, now)?;
        if state != ActivationState::Ready {
            return Err(CatalogError::InvalidArgument(format!("the activation link is {}", state.describe())));
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // Exactly one concurrent redemption changes the row; the others change nothing.
        let claimed = sqlx::query(self.sql(
            "UPDATE activation_links SET used_at = ?
             WHERE id = ? AND used_at IS NULL AND replaced_at IS NULL AND expires_at > ?",
        ))
        .bind(now)
        .bind(get_str(&link, "id")?)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if claimed.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Err(CatalogError::InvalidArgument("the activation link has already been used".into()));
        }
        let kind = link_kind(&link)?;
        let token = self.insert_credential(&mut tx, (&recipient_id, &name), kind, recipient_expires).await?;
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok((self.activation_info(secret).await?, token))
    }

    pub(super) async fn insert_federation_policy(
        &self,
        recipient_id: &str,
        policy: &NewFederationPolicy,
    ) -> Result<(), CatalogError> {
        policy.validate()?;
        let audiences = serde_json::to_string(&policy.audiences)
            .map_err(|e| CatalogError::internal(format!("cannot encode the audiences: {e}")))?;
        sqlx::query(self.sql(
            "INSERT INTO federation_policies (id, recipient_id, issuer, audiences, subject_claim, subject, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(new_id())
        .bind(recipient_id)
        .bind(&policy.issuer)
        .bind(audiences)
        .bind(policy.subject_claim.as_str())
        .bind(&policy.subject)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        self.views.changed();
        Ok(())
    }
}
