//! `SET`/`RESET orgwall.*`: Orgwall's own commands, answered without PostgreSQL in both the
//! simple protocol and the extended one (Parse/Bind/Describe/Execute of such a statement are
//! answered locally, in protocol order, through the pending queue).

use std::collections::HashMap;

use bytes::BytesMut;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{BindComplete, ParseComplete};
use pgwire::messages::response::CommandComplete;

use super::tenant::{self, OrgwallCommand, Source};
use super::Session;
use crate::config::Role;
use crate::errors::{code, ClientError};
use crate::wire;

/// Extended-protocol statements and portals that hold an `orgwall.*` command.
#[derive(Debug, Default)]
pub struct Commands {
    statements: HashMap<String, OrgwallCommand>,
    portals: HashMap<String, OrgwallCommand>,
}

impl Commands {
    /// A new Parse under `name` replaces whatever command statement had that name.
    pub fn forget_statement(&mut self, name: &str) {
        self.statements.remove(name);
    }

    /// Close of a statement (`S`) or portal (`P`).
    pub fn forget(&mut self, target: u8, name: &str) {
        if target == b'S' {
            self.statements.remove(name);
        } else {
            self.portals.remove(name);
        }
    }

    pub fn portal(&self, name: &str) -> Option<OrgwallCommand> {
        self.portals.get(name).cloned()
    }
}

impl Session<'_> {
    /// Simple protocol: applies the command and answers CommandComplete + ReadyForQuery.
    pub(super) async fn on_orgwall_command(
        &mut self,
        cmd: Result<OrgwallCommand, ClientError>,
    ) -> Result<(), ClientError> {
        let tag = match cmd.and_then(|c| self.apply_orgwall_command(c)) {
            Ok(tag) => tag,
            Err(e) => return self.refuse(e, true).await,
        };
        let mut b = BytesMut::new();
        wire::put(&mut b, &CommandComplete::new(tag.into()));
        wire::put_ready(&mut b, self.status);
        self.push_synthetic(b);
        Ok(())
    }

    /// Extended protocol, Parse: checks the command now (a tenant login is refused here) and
    /// remembers it; nothing reaches PostgreSQL.
    pub(super) async fn parse_command_statement(
        &mut self,
        name: String,
        cmd: Result<OrgwallCommand, ClientError>,
    ) -> Result<(), ClientError> {
        let checked = cmd.and_then(|c| {
            if self.principal.role != Role::Switcher {
                return tenant::resolve(
                    self.principal.role,
                    &Source::OrgId("-".into()),
                    &self.state.config.jwt,
                )
                .map(|_| c);
            }
            Ok(c)
        });
        let cmd = match checked {
            Ok(c) => c,
            Err(e) => return self.refuse(e, false).await,
        };
        if !name.is_empty()
            && (self.statements.contains_key(&name) || self.commands.statements.contains_key(&name))
        {
            let e = ClientError::error(
                code::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            );
            return self.refuse(e, false).await;
        }
        self.statements.remove(&name);
        self.commands.statements.insert(name, cmd);
        self.push_message(&ParseComplete::new());
        Ok(())
    }

    /// Bind of a command statement: answered locally.
    pub(super) fn bind_command(&mut self, statement: &str, portal: &str) -> bool {
        let Some(cmd) = self.commands.statements.get(statement).cloned() else {
            return false;
        };
        self.commands.portals.insert(portal.to_string(), cmd);
        self.push_message(&BindComplete::new());
        true
    }

    /// Describe of a command statement or portal: no parameters, no rows.
    pub(super) fn describe_command(&mut self, target: u8, name: &str) -> bool {
        let known = if target == b'S' {
            self.commands.statements.contains_key(name)
        } else {
            self.commands.portals.contains_key(name)
        };
        if !known {
            return false;
        }
        if target == b'S' {
            self.push_message(&ParameterDescription::new(vec![]));
        }
        self.push_message(&NoData::new());
        true
    }

    /// Execute of a command portal: applies it and answers CommandComplete.
    pub(super) async fn execute_command(&mut self, cmd: OrgwallCommand) -> Result<(), ClientError> {
        match self.apply_orgwall_command(cmd) {
            Ok(tag) => {
                self.push_message(&CommandComplete::new(tag.into()));
                Ok(())
            }
            Err(e) => self.refuse(e, false).await,
        }
    }

    fn push_message<M: pgwire::messages::Message>(&mut self, m: &M) {
        let mut b = BytesMut::new();
        wire::put(&mut b, m);
        self.push_synthetic(b);
    }

    fn apply_orgwall_command(&mut self, cmd: OrgwallCommand) -> Result<&'static str, ClientError> {
        match cmd {
            OrgwallCommand::Bind { org, local } => {
                let org = tenant::resolve(self.principal.role, &org, &self.state.config.jwt)?;
                tracing::info!(org_id = %org, local, "tenant bound");
                if local {
                    if self.status != b'I' {
                        self.bound_local = Some(org);
                    }
                } else {
                    self.bound = Some(org);
                }
                Ok("SET")
            }
            OrgwallCommand::Reset => {
                tenant::resolve(
                    self.principal.role,
                    &Source::OrgId("-".into()),
                    &self.state.config.jwt,
                )?;
                self.bound = None;
                self.bound_local = None;
                Ok("RESET")
            }
        }
    }
}
