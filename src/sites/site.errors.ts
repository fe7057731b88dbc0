import { NotFoundError } from '../shared/errors.js';

export class SiteNotFoundError extends NotFoundError {
  constructor(readonly siteId: string) {
    super(`site ${siteId} not found`, 'site-not-found');
  }
}
