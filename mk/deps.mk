# One surface: the CLI and every binding use Latchkey through latchkey-facade only, so a new language binding
# is a thin converter and no caller re-implements runtime or core pieces. `make check-deps` reads each crate's
# direct (normal) dependencies with `cargo tree` and fails when one of them names another latchkey-* crate.
# Exceptions are listed below by name, so keeping one is a visible decision; a listed exception that is no
# longer needed is reported so it can be removed.

TEST_TARGETS += check-deps

# The crates that must depend on latchkey-facade and on no other latchkey-* crate.
FACADE_ONLY_CRATES := latchkey-cli latchkey-python latchkey-ffi
# Allowed exceptions, as crate:dependency (none today).
FACADE_ONLY_EXCEPTIONS :=

.PHONY: check-deps

check-deps:
	@status=0; \
	for crate in $(FACADE_ONLY_CRATES); do \
	  tree=$$(cargo tree -q -e normal --depth 1 --prefix none --target all -p $$crate); \
	  deps=$$(printf '%s\n' "$$tree" | tail -n +2 | awk '$$1 ~ /^latchkey-/ { print $$1 }' | sort -u | tr '\n' ' '); \
	  case " $$deps " in *" latchkey-facade "*) ;; \
	    *) echo "check-deps: $$crate does not depend on latchkey-facade" >&2; status=1;; esac; \
	  for dep in $$deps; do \
	    [ "$$dep" = latchkey-facade ] && continue; \
	    case " $(FACADE_ONLY_EXCEPTIONS) " in \
	      *" $$crate:$$dep "*) echo "check-deps: $$crate -> $$dep (listed exception)";; \
	      *) echo "check-deps: $$crate must depend on latchkey-facade only, but depends on $$dep" >&2; status=1;; \
	    esac; \
	  done; \
	done; \
	for pair in $(FACADE_ONLY_EXCEPTIONS); do \
	  crate=$${pair%%:*}; dep=$${pair#*:}; \
	  cargo tree -q -e normal --depth 1 --prefix none --target all -p $$crate | tail -n +2 | awk '{ print $$1 }' \
	    | grep -qx "$$dep" || echo "check-deps: exception $$pair is no longer needed: remove it from mk/deps.mk"; \
	done; \
	[ $$status = 0 ] && echo "check-deps: $(FACADE_ONLY_CRATES) depend on latchkey-facade only$(if $(FACADE_ONLY_EXCEPTIONS), (exceptions: $(FACADE_ONLY_EXCEPTIONS)))"; \
	exit $$status
