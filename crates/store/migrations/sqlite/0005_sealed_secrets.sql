-- Secret config values are sealed (encrypted, `pw1:<key id>:…`, see src/secrets.rs). Rows of older databases
-- hold them in clear with `sealed = 0` until the store's first open with a key seals them.
ALTER TABLE plugin_config ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
