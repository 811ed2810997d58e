# Shell completions and the man page, made by the built binary from its own command line
# (docs/editor.md), and installed where bash-completion, zsh and man look for them.
set(HOIST_SHARE ${CMAKE_BINARY_DIR}/share)
# The binary runs at build time: a sanitizer build reads the project's leak suppressions, as
# its tests do (cmake/sanitize.env)
set(HOIST_RUN_BUILT ${CMAKE_COMMAND} -E env
    LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/cmake/lsan.supp:print_suppressions=0)
add_custom_command(
  OUTPUT ${HOIST_SHARE}/completions/hoist ${HOIST_SHARE}/completions/_hoist
  COMMAND ${CMAKE_COMMAND} -E make_directory ${HOIST_SHARE}/completions
  COMMAND ${HOIST_RUN_BUILT} sh -c "\"$0\" completion bash > \"$1\" && \"$0\" completion zsh > \"$2\""
          $<TARGET_FILE:hoist> ${HOIST_SHARE}/completions/hoist ${HOIST_SHARE}/completions/_hoist
  DEPENDS hoist VERBATIM
  COMMENT "Shell completions of hoist (bash, zsh)")
set(HOIST_EDITOR_OUTPUTS ${HOIST_SHARE}/completions/hoist ${HOIST_SHARE}/completions/_hoist)
install(FILES ${HOIST_SHARE}/completions/hoist DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT hoist)
install(FILES ${HOIST_SHARE}/completions/_hoist DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions COMPONENT hoist)

# help2man (Debian's help2man, .ci/packages) turns --help and --version into hoist.1; each
# subcommand's --help goes in its COMMANDS section. Without help2man there is no man page.
find_program(HOIST_HELP2MAN help2man)
if(HOIST_HELP2MAN)
  add_custom_command(
    OUTPUT ${HOIST_SHARE}/man/hoist.1
    COMMAND ${CMAKE_COMMAND} -E make_directory ${HOIST_SHARE}/man
    COMMAND ${HOIST_RUN_BUILT} ${CMAKE_SOURCE_DIR}/cmake/man-commands.sh $<TARGET_FILE:hoist> ${HOIST_SHARE}/man/hoist.h2m
    COMMAND ${HOIST_RUN_BUILT} ${HOIST_HELP2MAN} --no-info --no-discard-stderr --section=1 --source=hoist
            --include=${HOIST_SHARE}/man/hoist.h2m --output=${HOIST_SHARE}/man/hoist.1 $<TARGET_FILE:hoist>
    DEPENDS hoist ${CMAKE_SOURCE_DIR}/cmake/man-commands.sh VERBATIM
    COMMENT "Man page hoist.1 (help2man)")
  list(APPEND HOIST_EDITOR_OUTPUTS ${HOIST_SHARE}/man/hoist.1)
  install(FILES ${HOIST_SHARE}/man/hoist.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT hoist)
else()
  message(STATUS "help2man not found: no man page (apt-get install help2man)")
endif()
add_custom_target(hoist_editor_files ALL DEPENDS ${HOIST_EDITOR_OUTPUTS})
