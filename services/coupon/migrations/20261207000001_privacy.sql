-- A person's redemptions and uses, for their export and erasure (titan_kit::privacy) without
-- a full scan.
CREATE INDEX IF NOT EXISTS coupon_redemptions_user ON coupon_redemptions (user_id, id);
CREATE INDEX IF NOT EXISTS coupon_user_uses_user ON coupon_user_uses (user_id, code);
