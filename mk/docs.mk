# Documentation contracts that can be checked mechanically: every test docs/SECURITY.md names as the proof of a
# claim exists (a renamed or deleted test fails the suite instead of leaving a claim unbacked).

TEST_TARGETS += test-docs

.PHONY: test-docs

test-docs:
	python3 tests/docs/check_security_claims.py
