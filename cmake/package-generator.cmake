# CPACK_PROJECT_CONFIG_FILE: read by cpack once per generator. Only the archive gets a
# top-level folder: in a .deb it would put the files under /hoist-VERSION-linux-ARCH/usr.
if(CPACK_GENERATOR STREQUAL "TGZ")
  set(CPACK_COMPONENT_INCLUDE_TOPLEVEL_DIRECTORY ON)
else()
  set(CPACK_COMPONENT_INCLUDE_TOPLEVEL_DIRECTORY OFF)
endif()
