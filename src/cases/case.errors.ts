import { NotFoundError } from '../shared/errors.js';

export class CaseNotFoundError extends NotFoundError {
  constructor(readonly number: number) {
    super(`case ${number} not found`, 'case-not-found');
  }
}
