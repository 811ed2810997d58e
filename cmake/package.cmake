# Packages of hoist: `cmake --build build --target package` writes, for each component, a
# .deb and a .tar.gz with its SHA-256 beside it (FILE.sha256, `sha256sum -c` format):
#   hoist-VERSION-linux-ARCH.{deb,tar.gz}         the command, its man page and completions
#   libhoist-dev-VERSION-linux-ARCH.{deb,tar.gz}  libhoist for embedding: libraries, headers,
#                                                 CMake and pkg-config files
# The action and the Azure Pipelines template install the first (docs/ci.md). The stdlib and
# the bundled pipelines are compiled into the binary: the command needs nothing else.
set(CPACK_PACKAGE_NAME hoist)
set(CPACK_PACKAGE_VENDOR "hoist")
set(CPACK_PACKAGE_CONTACT "hoist maintainers <hoist@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Build, scan, push, deploy and verify containers, scripted in Lua")
set(CPACK_PACKAGE_DESCRIPTION "hoist takes a container from source to a verified deployment (local Docker, \
Azure Container Instances, App Service, Container Apps, AKS, Kubernetes): build, Trivy scan, push, deploy, \
verify, and rollback when a step fails. One C++ program with LuaJIT inside; its pipelines are versioned Lua scripts.")
string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _hoist_arch)
set(CPACK_GENERATOR "TGZ;DEB")
set(CPACK_PACKAGE_CHECKSUM SHA256)
# RelWithDebInfo is the default build: the packages carry stripped binaries (a tenth the size)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL hoist dev)
set(CPACK_COMPONENT_HOIST_DISPLAY_NAME "hoist")
set(CPACK_COMPONENT_DEV_DISPLAY_NAME "libhoist development files")
set(CPACK_COMPONENT_DEV_DESCRIPTION "libhoist, the engine of hoist, to embed in a C++ program: static and \
shared libraries, headers, CMake package and pkg-config file.")

# .tar.gz: one archive per component, both unpacking to hoist-VERSION-linux-ARCH/ (bin/, share/;
# lib/, include/), so the two unpacked in one place make one tree
set(CPACK_ARCHIVE_COMPONENT_INSTALL ON)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_LIST_DIR}/package-generator.cmake)
set(CPACK_PACKAGE_FILE_NAME "hoist-${PROJECT_VERSION}-linux-${_hoist_arch}")
set(CPACK_ARCHIVE_HOIST_FILE_NAME "hoist-${PROJECT_VERSION}-linux-${_hoist_arch}")
set(CPACK_ARCHIVE_DEV_FILE_NAME "libhoist-dev-${PROJECT_VERSION}-linux-${_hoist_arch}")

# Debian: the shared libraries the binaries link (libcurl, libluajit, libyaml-cpp, libssl,
# libstdc++, ...) are found by dpkg-shlibdeps (dpkg-dev, .ci/packages) and written to Depends
# with the versions this build needs; without dpkg-shlibdeps the list is declared here, as
# Debian 12 names it. The tools hoist drives through their CLIs are suggested, not required:
# `hoist doctor` says what a missing one disables.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_HOIST_PACKAGE_NAME hoist)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libhoist-dev)
set(CPACK_DEBIAN_HOIST_FILE_NAME "hoist-${PROJECT_VERSION}-linux-${_hoist_arch}.deb")
set(CPACK_DEBIAN_DEV_FILE_NAME "libhoist-dev-${PROJECT_VERSION}-linux-${_hoist_arch}.deb")
set(CPACK_DEBIAN_HOIST_PACKAGE_SECTION admin)
find_program(HOIST_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(HOIST_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libc6 (>= 2.34), libcurl4 (>= 7.63.0), libluajit2-5.1-2 | libluajit-5.1-2, libssl3 (>= 3.0.0), libstdc++6 (>= 11), libgcc-s1 (>= 3.0), libyaml-cpp0.7 (>= 0.7.0)")
endif()
set(CPACK_DEBIAN_HOIST_PACKAGE_RECOMMENDS "ca-certificates, git")
set(CPACK_DEBIAN_HOIST_PACKAGE_SUGGESTS "docker.io, trivy, kubectl, helm, azure-cli")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "nlohmann-json3-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)

include(CPack)
