-- An erased driver's profile and GPS history go; the routes they drove and the deliveries
-- they carried stay (carriers, invoices and disputes need them) with the driver's id taken
-- off and the privacy pseudonym in its place, so a kept row still adds up per driver
-- without naming anyone.
ALTER TABLE driver_routes ALTER COLUMN driver_id DROP NOT NULL;
ALTER TABLE driver_routes ADD COLUMN driver_pseudonym TEXT;
ALTER TABLE driver_deliveries ADD COLUMN driver_pseudonym TEXT;
