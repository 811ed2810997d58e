#!/bin/sh
# Writes help2man's include file for hoist.1: the name, a description, and a COMMANDS section
# with every subcommand's own --help (the list comes from the binary: `hoist completion commands`).
# usage: man-commands.sh HOIST OUT
set -eu
hoist=$1
out=$2
{
  printf '[NAME]\nhoist \\- build, scan, push, deploy and verify containers, scripted in Lua\n\n'
  printf '[DESCRIPTION]\n.B hoist\ntakes a container from source to a verified deployment: build, Trivy scan, push, deploy,\n'
  printf 'verify, and rollback when a step fails. Pipelines are versioned Lua scripts run by the engine.\n\n'
  printf '[COMMANDS]\n'
  for cmd in $("$hoist" completion commands); do
    printf '.SS "%s"\n.nf\n' "$cmd"
    # roff: a backslash is \e; a line starting with . or ' is a request unless escaped
    "$hoist" "$cmd" --help 2>&1 | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
    printf '.fi\n'
  done
  printf '\n[SEE ALSO]\nhoist run PIPELINE --help prints a pipeline'"'"'s parameters; docs/ in the source tree.\n'
} > "$out"
