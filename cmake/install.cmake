# Installation in the FHS places (`cmake --install`) and the Debian package (`cpack -G DEB`).
# Included at the end of the top-level CMakeLists.txt, once the forkd and forkctl targets exist.
# It only installs and packages what the build produced; it never builds anything itself.
#
#   binaries           PREFIX/bin/forkd, PREFIX/bin/forkctl
#   systemd units      PREFIX/lib/systemd/system/forkd{,-root}.service, forkd.socket
#   sysusers, tmpfiles PREFIX/lib/sysusers.d/forkd.conf, PREFIX/lib/tmpfiles.d/forkd.conf
#   configuration      /etc/forkd/forkd.yaml when PREFIX is /usr, else PREFIX/etc/forkd/
#   man pages          PREFIX/share/man/man8/forkd.8, forkctl.8, man5/forkd.yaml.5
#   documentation      PREFIX/share/doc/forkd/README.md

include(GNUInstallDirs)

install(TARGETS forkd forkctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Fixed under the prefix, not CMAKE_INSTALL_LIBDIR: forkd finds it as ../lib/forkd beside bin.
install(TARGETS forkd_takeover LIBRARY DESTINATION lib/forkd)

install(FILES ${PROJECT_SOURCE_DIR}/systemd/sysusers.d/forkd.conf DESTINATION lib/sysusers.d)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/tmpfiles.d/forkd.conf DESTINATION lib/tmpfiles.d)
install(FILES ${PROJECT_SOURCE_DIR}/man/forkd.8 ${PROJECT_SOURCE_DIR}/man/forkctl.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_SOURCE_DIR}/man/forkd.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The configuration directory and the paths inside the units depend on the prefix given at
# install time (`cmake --install --prefix`, or /usr when CPack packages), not on the one known
# when configuring, so they are decided by install-time code. The units name /usr/bin and
# /etc/forkd; for any other prefix they are rewritten to point at what was installed.
install(CODE "
  set(FORKD_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(FORKD_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(FORKD_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
")
install(CODE [[
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(forkd_confdir "/etc/forkd")
  else()
    set(forkd_confdir "${CMAKE_INSTALL_PREFIX}/etc/forkd")
  endif()
  file(INSTALL DESTINATION "${forkd_confdir}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${FORKD_SOURCE_DIR}/etc/forkd.yaml")

  # A directory of its own per run: installs and packagings may run side by side.
  string(RANDOM LENGTH 12 forkd_run)
  set(forkd_staging "${FORKD_STAGING_DIR}/${forkd_run}")
  file(MAKE_DIRECTORY "${forkd_staging}")
  set(forkd_units)
  foreach(unit forkd.service forkd-root.service forkd.socket)
    file(READ "${FORKD_SOURCE_DIR}/systemd/${unit}" text)
    string(REPLACE "/usr/bin/" "${CMAKE_INSTALL_PREFIX}/${FORKD_BINDIR}/" text "${text}")
    string(REPLACE "/etc/forkd/" "${forkd_confdir}/" text "${text}")
    file(WRITE "${forkd_staging}/${unit}" "${text}")
    list(APPEND forkd_units "${forkd_staging}/${unit}")
  endforeach()
  file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES ${forkd_units})
  file(REMOVE_RECURSE "${forkd_staging}")
]])

# ---------------------------------------------------------------------------------------------
# Debian package. `cpack -G DEB` in the build directory writes forkd_VERSION_ARCH.deb.
set(FORKD_DEBIAN_DIR ${PROJECT_BINARY_DIR}/debian)

# Maintainer scripts: create the user and directories, let systemd see the units; nothing is
# enabled or started (the operator runs `systemctl enable --now forkd`). Removal stops the
# units; purge drops the logs. The forkd user stays, as Debian does with system users.
# DPKG_ROOT (dpkg --root=DIR --force-script-chrootless, as the package test installs it) is
# honoured: the user goes into DIR's /etc, and the running system is left alone.
file(CONFIGURE OUTPUT ${FORKD_DEBIAN_DIR}/postinst CONTENT [[#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        if [ -n "$DPKG_ROOT" ]; then
            systemd-sysusers --root="$DPKG_ROOT" "$DPKG_ROOT/usr/lib/sysusers.d/forkd.conf"
        else
            systemd-sysusers /usr/lib/sysusers.d/forkd.conf
        fi
    elif [ -z "$DPKG_ROOT" ] && ! getent passwd forkd >/dev/null && command -v adduser >/dev/null 2>&1; then
        adduser --system --group --no-create-home --home /nonexistent --quiet forkd
    fi
    if [ -z "$DPKG_ROOT" ] && command -v systemd-tmpfiles >/dev/null 2>&1; then
        systemd-tmpfiles --create /usr/lib/tmpfiles.d/forkd.conf || true
    fi
    if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
exit 0
]] @ONLY)
file(CONFIGURE OUTPUT ${FORKD_DEBIAN_DIR}/prerm CONTENT [[#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl stop forkd.socket forkd.service forkd-root.service >/dev/null 2>&1 || true
    systemctl disable forkd.socket forkd.service forkd-root.service >/dev/null 2>&1 || true
fi
exit 0
]] @ONLY)
file(CONFIGURE OUTPUT ${FORKD_DEBIAN_DIR}/postrm CONTENT [[#!/bin/sh
set -e
case "$1" in
    remove|purge)
        if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
        fi
        ;;
esac
if [ "$1" = purge ]; then
    rm -rf "$DPKG_ROOT/var/log/forkd" "$DPKG_ROOT/run/forkd"
    rmdir "$DPKG_ROOT/etc/forkd" 2>/dev/null || true
fi
exit 0
]] @ONLY)
file(CONFIGURE OUTPUT ${FORKD_DEBIAN_DIR}/conffiles CONTENT "/etc/forkd/forkd.yaml\n")
file(CHMOD ${FORKD_DEBIAN_DIR}/postinst ${FORKD_DEBIAN_DIR}/prerm ${FORKD_DEBIAN_DIR}/postrm
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                      WORLD_READ WORLD_EXECUTE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME forkd)
set(CPACK_PACKAGE_VENDOR "forkd")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "forkd maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "pre-forking cluster supervisor")
set(CPACK_PACKAGE_DESCRIPTION
    "forkd creates the listening sockets, forks one worker per CPU core that inherits them,\n\
respawns the workers that die and relays messages between them and the operator:\n\
the nginx/unicorn master-worker model as a standalone daemon, for any program.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
# Stage with DESTDIR so that /etc/forkd lands in the package, never on the building machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_NAME forkd)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "forkd maintainers")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS systemd)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${FORKD_DEBIAN_DIR}/postinst ${FORKD_DEBIAN_DIR}/prerm ${FORKD_DEBIAN_DIR}/postrm
    ${FORKD_DEBIAN_DIR}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
