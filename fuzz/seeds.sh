# Sourced by fuzz/replay.sh and bench/fuzz.sh: the fuzz targets, and fuzz_seeds NAME, which
# lists a target's corpus files and the recorded fixtures (../shared/fixtures, read in place,
# never copied into the repository) that make good seeds for it.
HOIST_FUZZ_TARGETS="json yaml reference headers manifest params secrets"
: "${root:?}"
HOIST_FIXTURES=${HOIST_FIXTURES:-$root/../shared/fixtures}

fuzz_seeds() {
  find "$root/fuzz/corpus/$1" -type f ! -name README.md
  [[ -d $HOIST_FIXTURES ]] || return 0
  case $1 in
    json | params) find "$HOIST_FIXTURES" -type f \( -name '*.json' -o -name '*.json.golden' \) ;;
    yaml) find "$HOIST_FIXTURES" -type f \( -name '*.yaml' -o -name '*.yaml.example' \) ;;
    manifest) find "$HOIST_FIXTURES/oci" -type f -name '*.json' ;;
    headers) find "$HOIST_FIXTURES" -type f -name '*.http' ;;
  esac
}
