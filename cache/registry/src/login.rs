//! `rbuild login` / `logout`: check credentials against the registry (through its
//! token service when it has one), then store or erase them in Docker's config.

use reqwest::header::AUTHORIZATION;
use reqwest::{StatusCode, Url};

use crate::auth::{Challenge, basic_header, challenge_of};
use crate::credentials::{Credential, erase_credentials, store_credentials};
use crate::error::{Ctx, error_message};
use crate::reference::normalize_registry;
use crate::{RegistryClient, RegistryError};

impl RegistryClient {
    /// Verify `username`/`password` against `registry` and store them in the
    /// docker config (`auths`, or its credential helper).
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let registry = normalize_registry(registry);
        let cred = Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        self.verify_login(&registry, &cred).await?;
        let dir = self.opts().credentials.config_dir().ok_or_else(|| {
            RegistryError::Credentials(
                "no docker config directory: set DOCKER_CONFIG or HOME".into(),
            )
        })?;
        let (reg, u, p) = (registry.clone(), username.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || store_credentials(&dir, &reg, &u, &p))
            .await
            .map_err(|e| {
                RegistryError::Credentials(format!("storing credentials failed: {e}"))
            })??;
        self.auth().forget(&registry);
        Ok(())
    }

    /// Remove stored credentials; `Ok(false)` if there were none.
    pub async fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let registry = normalize_registry(registry);
        let dir = self.opts().credentials.config_dir().ok_or_else(|| {
            RegistryError::Credentials(
                "no docker config directory: set DOCKER_CONFIG or HOME".into(),
            )
        })?;
        let reg = registry.clone();
        let removed = tokio::task::spawn_blocking(move || erase_credentials(&dir, &reg))
            .await
            .map_err(|e| {
                RegistryError::Credentials(format!("removing credentials failed: {e}"))
            })??;
        self.auth().forget(&registry);
        Ok(removed)
    }

    async fn verify_login(&self, registry: &str, cred: &Credential) -> Result<(), RegistryError> {
        let ctx = Ctx {
            registry,
            repository: "",
            what: "login".into(),
        };
        let url = Url::parse(&self.base_url(registry))
            .map_err(|e| ctx.protocol(format!("bad registry URL: {e}")))?;
        let Credential::Basic { username, password } = cred else {
            return Ok(());
        };
        let probe = |auth: Option<String>| {
            let url = url.clone();
            let ctx = &ctx;
            async move {
                self.opts()
                    .retry
                    .run(|_| {
                        let url = url.clone();
                        let auth = auth.clone();
                        async move {
                            let mut rb = self.http_for(&url).get(url);
                            if let Some(a) = auth {
                                rb = rb.header(AUTHORIZATION, a);
                            }
                            let resp = rb.send().await.map_err(|e| ctx.net(e))?;
                            if resp.status().is_server_error() {
                                return Err(Self::fail(ctx, resp).await);
                            }
                            Ok(resp)
                        }
                    })
                    .await
            }
        };
        let resp = probe(None).await?;
        if resp.status().is_success() {
            return Ok(()); // open registry: nothing to check
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(Self::fail(&ctx, resp).await);
        }
        let rejected = |msg: String| RegistryError::Unauthorized {
            registry: registry.to_string(),
            scope: "login".into(),
            message: format!(
                "the registry rejected user {username:?}: {msg}; check the username and password"
            ),
        };
        let auth = match challenge_of(&resp) {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let (tok, _) = self
                    .auth()
                    .fetch_token(
                        self.http(),
                        registry,
                        &realm,
                        service.as_deref(),
                        &[],
                        Some(cred),
                    )
                    .await
                    .map_err(|e| match e {
                        RegistryError::Unauthorized { message, .. } => rejected(message),
                        e => e,
                    })?;
                format!("Bearer {tok}")
            }
            _ => basic_header(username, password),
        };
        let resp = probe(Some(auth)).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let msg = error_message(resp).await;
        if status == StatusCode::UNAUTHORIZED {
            return Err(rejected(msg));
        }
        Err(ctx.status(status, msg))
    }
}
