-- A person's orders, for their export and erasure (titan_kit::privacy) without a full scan.
CREATE INDEX IF NOT EXISTS flashsale_orders_user ON flashsale_orders (user_id, id);
