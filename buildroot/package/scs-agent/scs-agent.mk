################################################################################
#
# scs-agent
#
################################################################################

SCS_AGENT_VERSION = v0.1.0
SCS_AGENT_SITE = https://example.invalid/scs-gateway.git
SCS_AGENT_SITE_METHOD = git
SCS_AGENT_LICENSE = 0BSD or Apache-2.0 or MIT, Apache-2.0, Apache-2.0 and ISC, Apache-2.0 or Apache-2.0 WITH LLVM-exception or MIT, Apache-2.0 or BSD-2-Clause or MIT, Apache-2.0 or ISC or MIT, Apache-2.0 or MIT, Apache-2.0 or MIT or Zlib, BSD-3-Clause, BlueOak-1.0.0, ISC, MIT, MIT or Unlicense, Zlib, Public Domain (SQLite)
SCS_AGENT_LICENSE_FILES = LICENSE VENDOR/adler2/LICENSE-0BSD VENDOR/adler2/LICENSE-APACHE VENDOR/adler2/LICENSE-MIT VENDOR/async-channel/LICENSE-APACHE VENDOR/async-channel/LICENSE-MIT VENDOR/async-executor/LICENSE-APACHE VENDOR/async-executor/LICENSE-MIT VENDOR/async-fs/LICENSE-APACHE VENDOR/async-fs/LICENSE-MIT VENDOR/async-io/LICENSE-APACHE VENDOR/async-io/LICENSE-MIT VENDOR/async-lock/LICENSE-APACHE VENDOR/async-lock/LICENSE-MIT VENDOR/async-net/LICENSE-APACHE VENDOR/async-net/LICENSE-MIT VENDOR/async-process/LICENSE-APACHE VENDOR/async-process/LICENSE-MIT VENDOR/async-signal/LICENSE-APACHE VENDOR/async-signal/LICENSE-MIT VENDOR/async-task/LICENSE-APACHE VENDOR/async-task/LICENSE-MIT VENDOR/atomic-waker/LICENSE-APACHE VENDOR/atomic-waker/LICENSE-MIT VENDOR/atomic-waker/LICENSE-THIRD-PARTY VENDOR/base64/LICENSE-APACHE VENDOR/base64/LICENSE-MIT VENDOR/bitflags/LICENSE-APACHE VENDOR/bitflags/LICENSE-MIT VENDOR/block-buffer/LICENSE-APACHE VENDOR/block-buffer/LICENSE-MIT VENDOR/blocking/LICENSE-APACHE VENDOR/blocking/LICENSE-MIT VENDOR/byteorder/COPYING VENDOR/byteorder/LICENSE-MIT VENDOR/byteorder/UNLICENSE VENDOR/bytes/LICENSE VENDOR/cfg-if/LICENSE-APACHE VENDOR/cfg-if/LICENSE-MIT VENDOR/concurrent-queue/LICENSE-APACHE VENDOR/concurrent-queue/LICENSE-MIT VENDOR/crc32fast/LICENSE-APACHE VENDOR/crc32fast/LICENSE-MIT VENDOR/crossbeam-utils/LICENSE-APACHE VENDOR/crossbeam-utils/LICENSE-MIT VENDOR/crypto-common/LICENSE-APACHE VENDOR/crypto-common/LICENSE-MIT VENDOR/digest/LICENSE-APACHE VENDOR/digest/LICENSE-MIT VENDOR/env_filter/LICENSE-APACHE VENDOR/env_filter/LICENSE-MIT VENDOR/env_logger/LICENSE-APACHE VENDOR/env_logger/LICENSE-MIT VENDOR/errno/LICENSE-APACHE VENDOR/errno/LICENSE-MIT VENDOR/event-listener/LICENSE-APACHE VENDOR/event-listener/LICENSE-MIT VENDOR/event-listener-strategy/LICENSE-APACHE VENDOR/event-listener-strategy/LICENSE-MIT VENDOR/fallible-iterator/LICENSE-APACHE VENDOR/fallible-iterator/LICENSE-MIT VENDOR/fallible-streaming-iterator/LICENSE-APACHE VENDOR/fallible-streaming-iterator/LICENSE-MIT VENDOR/fastrand/LICENSE-APACHE VENDOR/fastrand/LICENSE-MIT VENDOR/fixedbitset/LICENSE-APACHE VENDOR/fixedbitset/LICENSE-MIT VENDOR/flate2/LICENSE-APACHE VENDOR/flate2/LICENSE-MIT VENDOR/flume/LICENSE-APACHE VENDOR/flume/LICENSE-MIT VENDOR/foldhash/LICENSE VENDOR/futures-core/LICENSE-APACHE VENDOR/futures-core/LICENSE-MIT VENDOR/futures-io/LICENSE-APACHE VENDOR/futures-io/LICENSE-MIT VENDOR/futures-lite/LICENSE-APACHE VENDOR/futures-lite/LICENSE-MIT VENDOR/futures-lite/LICENSE-THIRD-PARTY VENDOR/futures-sink/LICENSE-APACHE VENDOR/futures-sink/LICENSE-MIT VENDOR/futures-task/LICENSE-APACHE VENDOR/futures-task/LICENSE-MIT VENDOR/futures-util/LICENSE-APACHE VENDOR/futures-util/LICENSE-MIT VENDOR/generic-array/LICENSE VENDOR/getrandom-0.2.17/LICENSE-APACHE VENDOR/getrandom-0.2.17/LICENSE-MIT VENDOR/half/LICENSE-APACHE VENDOR/half/LICENSE-MIT VENDOR/hash32/LICENSE-APACHE VENDOR/hash32/LICENSE-MIT VENDOR/hashbrown-0.15.5/LICENSE-APACHE VENDOR/hashbrown-0.15.5/LICENSE-MIT VENDOR/hashlink/LICENSE-APACHE VENDOR/hashlink/LICENSE-MIT VENDOR/heapless/LICENSE-APACHE VENDOR/heapless/LICENSE-MIT VENDOR/http/LICENSE-APACHE VENDOR/http/LICENSE-MIT VENDOR/httparse/LICENSE-APACHE VENDOR/httparse/LICENSE-MIT VENDOR/itoa/LICENSE-APACHE VENDOR/itoa/LICENSE-MIT VENDOR/libc/LICENSE-APACHE VENDOR/libc/LICENSE-MIT VENDOR/libsqlite3-sys/LICENSE VENDOR/linux-raw-sys/LICENSE-APACHE VENDOR/linux-raw-sys/LICENSE-Apache-2.0_WITH_LLVM-exception VENDOR/linux-raw-sys/LICENSE-MIT VENDOR/lock_api/LICENSE-APACHE VENDOR/lock_api/LICENSE-MIT VENDOR/log/LICENSE-APACHE VENDOR/log/LICENSE-MIT VENDOR/md-5/LICENSE-APACHE VENDOR/md-5/LICENSE-MIT VENDOR/minicbor/LICENSE.md VENDOR/miniz_oxide/LICENSE VENDOR/miniz_oxide/LICENSE-APACHE.md VENDOR/miniz_oxide/LICENSE-MIT.md VENDOR/miniz_oxide/LICENSE-ZLIB.md VENDOR/mio/LICENSE VENDOR/once_cell/LICENSE-APACHE VENDOR/once_cell/LICENSE-MIT VENDOR/openssl-probe/LICENSE-APACHE VENDOR/openssl-probe/LICENSE-MIT VENDOR/parking/LICENSE-APACHE VENDOR/parking/LICENSE-MIT VENDOR/parking/LICENSE-THIRD-PARTY VENDOR/percent-encoding/LICENSE-APACHE VENDOR/percent-encoding/LICENSE-MIT VENDOR/pin-project-lite/LICENSE-APACHE VENDOR/pin-project-lite/LICENSE-MIT VENDOR/piper/LICENSE-APACHE VENDOR/piper/LICENSE-MIT VENDOR/polling/LICENSE-APACHE VENDOR/polling/LICENSE-MIT VENDOR/ring/LICENSE VENDOR/ring/LICENSE-BoringSSL VENDOR/ring/LICENSE-other-bits VENDOR/rusqlite/LICENSE VENDOR/rustix/LICENSE-APACHE VENDOR/rustix/LICENSE-Apache-2.0_WITH_LLVM-exception VENDOR/rustix/LICENSE-MIT VENDOR/rustls/LICENSE-APACHE VENDOR/rustls/LICENSE-ISC VENDOR/rustls/LICENSE-MIT VENDOR/rustls-native-certs/LICENSE VENDOR/rustls-native-certs/LICENSE-APACHE VENDOR/rustls-native-certs/LICENSE-ISC VENDOR/rustls-native-certs/LICENSE-MIT VENDOR/rustls-pemfile/LICENSE VENDOR/rustls-pemfile/LICENSE-APACHE VENDOR/rustls-pemfile/LICENSE-ISC VENDOR/rustls-pemfile/LICENSE-MIT VENDOR/rustls-pki-types/LICENSE-APACHE VENDOR/rustls-pki-types/LICENSE-MIT VENDOR/rustls-webpki-0.102.8/LICENSE VENDOR/rustls-webpki/LICENSE VENDOR/scopeguard/LICENSE-APACHE VENDOR/scopeguard/LICENSE-MIT VENDOR/serde/LICENSE-APACHE VENDOR/serde/LICENSE-MIT VENDOR/serde_core/LICENSE-APACHE VENDOR/serde_core/LICENSE-MIT VENDOR/serde_spanned/LICENSE-APACHE VENDOR/serde_spanned/LICENSE-MIT VENDOR/signal-hook-registry/LICENSE-APACHE VENDOR/signal-hook-registry/LICENSE-MIT VENDOR/simd-adler32/LICENSE.md VENDOR/slab/LICENSE VENDOR/smallvec/LICENSE-APACHE VENDOR/smallvec/LICENSE-MIT VENDOR/smol/LICENSE-APACHE VENDOR/smol/LICENSE-MIT VENDOR/socket2/LICENSE-APACHE VENDOR/socket2/LICENSE-MIT VENDOR/spin/LICENSE VENDOR/stable_deref_trait/LICENSE-APACHE VENDOR/stable_deref_trait/LICENSE-MIT VENDOR/subtle/LICENSE VENDOR/thiserror/LICENSE-APACHE VENDOR/thiserror/LICENSE-MIT VENDOR/tokio/LICENSE VENDOR/tokio-rustls/LICENSE-APACHE VENDOR/tokio-rustls/LICENSE-MIT VENDOR/tokio-stream/LICENSE VENDOR/tokio-util/LICENSE VENDOR/toml/LICENSE-APACHE VENDOR/toml/LICENSE-MIT VENDOR/toml_datetime/LICENSE-APACHE VENDOR/toml_datetime/LICENSE-MIT VENDOR/toml_parser/LICENSE-APACHE VENDOR/toml_parser/LICENSE-MIT VENDOR/toml_writer/LICENSE-APACHE VENDOR/toml_writer/LICENSE-MIT VENDOR/typenum/LICENSE VENDOR/typenum/LICENSE-APACHE VENDOR/typenum/LICENSE-MIT VENDOR/untrusted/LICENSE.txt VENDOR/ureq/LICENSE-APACHE VENDOR/ureq/LICENSE-MIT VENDOR/ureq-proto/LICENSE-APACHE.txt VENDOR/ureq-proto/LICENSE-MIT.txt VENDOR/utf8-zero/LICENSE-APACHE VENDOR/utf8-zero/LICENSE-MIT VENDOR/winnow/LICENSE-MIT VENDOR/zerocopy/LICENSE-APACHE VENDOR/zerocopy/LICENSE-BSD VENDOR/zerocopy/LICENSE-MIT VENDOR/zeroize/LICENSE-APACHE VENDOR/zeroize/LICENSE-MIT

# The source is a workspace (agent + cloud shim): build only the agent.
SCS_AGENT_CARGO_BUILD_OPTS = --package scs-agent --bin scs-agent

SCS_AGENT_BUILD_DIR_NAME = $(if $(BR2_ENABLE_DEBUG),debug,release)

# The repo's .cargo/config.toml trims the bundled SQLite through [env]
# LIBSQLITE3_FLAGS, but the download post-process replaces the source tree's
# cargo configuration with its vendoring configuration, so nothing in the
# repository's own config is guaranteed to reach cargo: pass the flags here.
# scripts/ci-packaging checks that they match the repository's value.
#
# pkg-cargo also exports CARGO_PROFILE_RELEASE_OPT_LEVEL="2",
# ..._LTO="false" and ..._CODEGEN_UNITS="16" (PKG_CARGO_ENV). Cargo gives
# environment overrides precedence over the workspace's [profile.release],
# which would undo the size profile the binary's budget depends on (armv7
# <= 3.0 MB). This variable comes after PKG_CARGO_ENV on the command line,
# so the workspace profile is restored here; scripts/ci-cross builds with
# exactly this environment and checks the size. For armv7 it also replaces
# pkg-cargo's target RUSTFLAGS (keeping its --allow-multiple-definition) to
# add Thumb-2 code generation, as .cargo/config.toml does for other builds.
SCS_AGENT_CARGO_ENV = \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-Clink-arg=-Wl,--allow-multiple-definition -Ctarget-feature=+thumb-mode" \
	CARGO_PROFILE_RELEASE_OPT_LEVEL="z" \
	CARGO_PROFILE_RELEASE_LTO="true" \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS="1" \
	CARGO_PROFILE_RELEASE_PANIC="abort" \
	LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_DEFAULT_MEMSTATUS=0 -USQLITE_ENABLE_STAT4"

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
	$(INSTALL) -D -m 0755 $(@D)/packaging/scs-agent-launch \
		$(TARGET_DIR)/usr/sbin/scs-agent-launch
	$(if $(SCS_AGENT_RELEASE_KEY),\
		$(INSTALL) -D -m 0644 $(SCS_AGENT_RELEASE_KEY) \
			$(TARGET_DIR)/etc/scs/release-key.pub)
	$(if $(SCS_AGENT_ENROLL_FILE),\
		$(INSTALL) -D -m 0640 $(SCS_AGENT_ENROLL_FILE) \
			$(TARGET_DIR)/etc/scs/enroll.toml)
endef

# Release public key for agent.update (32 raw bytes, base64), from the defconfig.
SCS_AGENT_RELEASE_KEY = $(call qstrip,$(BR2_PACKAGE_SCS_AGENT_RELEASE_KEY))
# First-boot enrollment file (site token), from the defconfig; empty = none.
SCS_AGENT_ENROLL_FILE = $(call qstrip,$(BR2_PACKAGE_SCS_AGENT_ENROLL_FILE))

define SCS_AGENT_USERS
	scs -1 scs -1 * /var/lib/scs-agent - - SCS Gateway agent
endef

define SCS_AGENT_PERMISSIONS
	/etc/scs d 0750 0 scs - - - - -
	/etc/scs/agent.toml f 0640 0 scs - - - - -
	/var/lib/scs-agent d 0750 scs scs - - - - -
	$(if $(SCS_AGENT_ENROLL_FILE),/etc/scs/enroll.toml f 0640 0 scs - - - - -)
endef

# Unit, init script, supervisor and polkit rule come from the source tree
# being built (packaging/), as in the Yocto recipe, so they always match the
# binary's version; there is no second copy in this package directory.
#
# Without systemd nothing else would restart the agent after agent.restart
# (exit status 75), a crash or a hang: the init script runs it under the
# supervisor, which also kills and restarts an agent whose heartbeat stops.
define SCS_AGENT_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(@D)/packaging/S99scs-agent \
		$(TARGET_DIR)/etc/init.d/S99scs-agent
	$(INSTALL) -D -m 0755 $(@D)/packaging/scs-agent-supervise \
		$(TARGET_DIR)/usr/sbin/scs-agent-supervise
endef

# The reboot command runs `systemctl reboot` as user scs; logind lets it only
# through this polkit rule (no capabilities, NoNewPrivileges in the unit).
define SCS_AGENT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/packaging/scs-agent.service \
		$(TARGET_DIR)/usr/lib/systemd/system/scs-agent.service
	$(if $(BR2_PACKAGE_POLKIT),\
		$(INSTALL) -D -m 0644 $(@D)/packaging/polkit/50-scs-agent.rules \
			$(TARGET_DIR)/usr/share/polkit-1/rules.d/50-scs-agent.rules)
endef

$(eval $(cargo-package))
