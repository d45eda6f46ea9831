CREATE TABLE "contacts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"phone" "bytea" NOT NULL,
	"phone_index" "bytea" NOT NULL,
	"name" "bytea",
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "contacts_tenant_phone_unique" UNIQUE("tenant_id","phone_index")
);
--> statement-breakpoint
CREATE TABLE "data_keys" (
	"scope" text NOT NULL,
	"version" integer NOT NULL,
	"wrapped_key" "bytea",
	"kek_kind" text NOT NULL,
	"kek_id" text NOT NULL,
	"state" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"rewrapped_at" timestamp with time zone,
	CONSTRAINT "data_keys_scope_version_pk" PRIMARY KEY("scope","version")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"contact_id" uuid NOT NULL,
	"direction" text NOT NULL,
	"body" "bytea" NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" uuid PRIMARY KEY NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"settings" jsonb NOT NULL,
	"twilio_auth_token" "bytea",
	"openai_api_key" "bytea",
	"airtable_api_key" "bytea",
	"airtable_mac_secret" "bytea",
	"podium_api_key" "bytea",
	"podium_webhook_secret" "bytea",
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "tenants_slug_unique" UNIQUE("slug")
);
--> statement-breakpoint
ALTER TABLE "contacts" ADD CONSTRAINT "contacts_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_contact_id_contacts_id_fk" FOREIGN KEY ("contact_id") REFERENCES "public"."contacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "messages_contact_idx" ON "messages" USING btree ("contact_id","created_at");