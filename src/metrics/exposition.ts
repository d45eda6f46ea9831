import { Registry } from 'prom-client';

export interface Scrape {
  contentType: string;
  body: string;
}

/**
 * The registries one `/metrics` answer is made of (the app's HTTP metrics, the relay's, the
 * identity's, the process's). Merged at scrape time: each part keeps its own registry, so two
 * apps in one process never count into each other, and a metric name used twice fails loudly.
 */
export class MetricsExposition {
  constructor(private readonly registries: readonly Registry[]) {}

  async scrape(): Promise<Scrape> {
    const merged = Registry.merge([...this.registries]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}
