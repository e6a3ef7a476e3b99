################################################################################
#
# scs-agent
#
################################################################################

SCS_AGENT_VERSION = v0.1.0
SCS_AGENT_SITE = https://example.invalid/scs-gateway.git
SCS_AGENT_SITE_METHOD = git
SCS_AGENT_LICENSE = Apache-2.0
SCS_AGENT_LICENSE_FILES = LICENSE

# The source is a workspace (agent + cloud shim): build only the agent.
SCS_AGENT_CARGO_BUILD_OPTS = --package scs-agent --bin scs-agent

SCS_AGENT_BUILD_DIR_NAME = $(if $(BR2_ENABLE_DEBUG),debug,release)

# The repo's .cargo/config.toml trims the bundled SQLite through [env]
# LIBSQLITE3_FLAGS. Cargo runs in $(@D), the source tree, but the download
# post-process writes the vendoring config to $(@D)/.cargo/config, which
# shadows config.toml (cargo reads only the extensionless file when both
# exist): pass the same flags here. scripts/ci-packaging checks they match.
SCS_AGENT_CARGO_ENV = LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_DEFAULT_MEMSTATUS=0 -DSQLITE_OMIT_JSON -USQLITE_ENABLE_STAT4"

# The default cargo install step runs `cargo install --path ./`, which a
# virtual workspace manifest does not support: install the built binary.
# A config already in the target tree (e.g. from an overlay) is kept.
define SCS_AGENT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(SCS_AGENT_BUILD_DIR_NAME)/scs-agent \
		$(TARGET_DIR)/usr/bin/scs-agent
	$(INSTALL) -d -m 0750 $(TARGET_DIR)/etc/scs
	[ -e $(TARGET_DIR)/etc/scs/agent.toml ] || \
		$(INSTALL) -m 0640 $(@D)/packaging/agent.toml \
			$(TARGET_DIR)/etc/scs/agent.toml
	$(INSTALL) -m 0644 $(@D)/agent/agent.example.toml \
		$(TARGET_DIR)/etc/scs/agent.toml.example
endef

define SCS_AGENT_USERS
	scs -1 scs -1 * /var/lib/scs-agent - - SCS Gateway agent
endef

define SCS_AGENT_PERMISSIONS
	/etc/scs d 0750 0 scs - - - - -
	/etc/scs/agent.toml f 0640 0 scs - - - - -
	/var/lib/scs-agent d 0750 scs scs - - - - -
endef

# Without systemd nothing else would restart the agent after agent.restart
# (exit status 75) or a crash: the init script runs it under this supervisor.
define SCS_AGENT_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(SCS_AGENT_PKGDIR)/S99scs-agent \
		$(TARGET_DIR)/etc/init.d/S99scs-agent
	$(INSTALL) -D -m 0755 $(SCS_AGENT_PKGDIR)/scs-agent-supervise \
		$(TARGET_DIR)/usr/sbin/scs-agent-supervise
endef

define SCS_AGENT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(SCS_AGENT_PKGDIR)/scs-agent.service \
		$(TARGET_DIR)/usr/lib/systemd/system/scs-agent.service
endef

$(eval $(cargo-package))
