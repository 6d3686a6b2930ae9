-- Ledger rows kept under a pseudonym after an erasure (the points stay on the books). They are
-- off the leaderboards for good: a rebuild of the boards from the ledger skips them.
ALTER TABLE gamification_ledger ADD COLUMN IF NOT EXISTS pseudonymised BOOLEAN NOT NULL DEFAULT false;
