-- The child sensor a command acts on (NULL: the gateway itself).
ALTER TABLE commands ADD COLUMN target TEXT;
